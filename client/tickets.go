package client

// Login tickets. The dealer holds no PINs: it serves the requests that change keys
// (trust.NeedsTickets: RSA key generation, deletion, restore, late deals) only with the login
// tickets of at least k nodes (internal/trust ticket.go). This process makes an Ed25519
// ticket key at start and keeps it in memory only; every ticket names it, and it signs the
// requests the tickets go with, so that a copy of this client's files gets no use from a
// ticket it captures. Tickets come with the answers to Login and ChangePIN, and are renewed
// before use when less than ticketMargin of their life is left: within the login session
// (a PINLogin without a PIN, under LoggedIn: the PIN is not sent again), or, from a node that
// holds no PIN for this client (a cluster not migrated to PINs), with a bare PINLogin without
// a PIN, which such a node answers with a NO_VERIFIER ticket. A client that did not log in to
// nodes holding its PIN gets no ticket from them, and its request fails with ErrNotLoggedIn
// before it is sent to the dealer.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
)

// ticketMargin is the life a kept ticket must have left to be used: the dealer checks the
// tickets when the request arrives, which may be a while after it was sent.
const ticketMargin = trust.TicketLifetime / 2

type heldTicket struct {
	t       *tchsmpb.LoginTicket
	expires time.Time
}

func (c *Client) ticketPub() []byte {
	return c.login.ticketKey.Public().(ed25519.PublicKey)
}

// checkTicket verifies a ticket node sent for this process.
func (c *Client) checkTicket(node string, t *tchsmpb.LoginTicket) (heldTicket, bool) {
	if t == nil {
		return heldTicket{}, false
	}
	st, err := trust.VerifyTicket(c.m, c.self.ID, t, time.Now())
	if err == nil && (st.GetNode() != node || !bytes.Equal(st.GetTicketKey(), c.ticketPub())) {
		err = fmt.Errorf("the ticket of %s names another node or ticket key", node)
	}
	if err != nil {
		c.log.Warn("a node's login ticket does not verify", "node", node, "err", err)
		return heldTicket{}, false
	}
	return heldTicket{t: t, expires: time.Unix(0, st.GetExpiresAt())}, true
}

// keepTicketsLocked replaces the kept tickets with those of rs (a login or a PIN change).
// c.login.mu is held.
func (c *Client) keepTicketsLocked(rs []PINNodeResult) {
	c.login.tickets = map[string]heldTicket{}
	c.login.ticketGen++
	for _, r := range rs {
		if h, ok := c.checkTicket(r.Node, r.ticket); ok {
			c.login.tickets[r.Node] = h
		}
	}
}

// loginTickets returns the tickets of at least k nodes, valid for ticketMargin at least: the
// kept ones, and new ones from the other nodes (asked all at once; it returns as soon as it
// has k). Too few is ErrNotLoggedIn when a node wants a login, ErrPINLocked when the client is
// locked on more than n−k nodes, else ErrNotEnoughNodes.
func (c *Client) loginTickets(ctx context.Context) ([]*tchsmpb.LoginTicket, error) {
	K := c.m.Threshold
	l := &c.login
	now := time.Now()
	have := map[string]*tchsmpb.LoginTicket{}
	l.mu.Lock()
	gen := l.ticketGen
	for node, h := range l.tickets {
		if h.expires.Sub(now) > ticketMargin {
			have[node] = h.t
		}
	}
	l.mu.Unlock()
	var ask []trust.Member
	for _, n := range c.m.Nodes {
		if have[n.ID] == nil {
			ask = append(ask, n)
		}
	}
	if len(have) < K {
		// The requests outlive this call when k answered first: their tickets are kept.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.signTimeout())
		answers := make(chan ticketAnswer, len(ask))
		var wg sync.WaitGroup
		for _, n := range ask {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a := ticketAnswer{node: n.ID}
				op, err := c.call(actx, n, transport.Node(n.ID), &tchsmpb.PINLogin{TicketKey: c.ticketPub()})
				switch {
				case err != nil:
					a.err = err
				default:
					res, _ := op.Message.(*tchsmpb.PINResult)
					var ok bool
					if a.h, ok = c.checkTicket(n.ID, res.GetTicket()); !ok {
						a.err = fmt.Errorf("%s: no valid login ticket", n.ID)
					} else {
						l.mu.Lock()
						if l.ticketGen == gen { // no login, PIN change or logout since
							l.tickets[n.ID] = a.h
						}
						l.mu.Unlock()
					}
				}
				answers <- a
			}()
		}
		go func() { wg.Wait(); cancel() }()
		var errs []ticketAnswer
		for range ask {
			var a ticketAnswer
			select {
			case a = <-answers:
			case <-ctx.Done():
				a = ticketAnswer{err: ctx.Err()}
			}
			if a.err != nil {
				errs = append(errs, a)
			} else {
				have[a.node] = a.h.t
			}
			if len(have) >= K || ctx.Err() != nil {
				break
			}
		}
		if len(have) < K {
			return nil, c.ticketErr(errs, len(have))
		}
	}
	out := make([]*tchsmpb.LoginTicket, 0, len(have))
	for _, t := range have {
		out = append(out, t)
	}
	return out, nil
}

type ticketAnswer struct {
	node string
	h    heldTicket
	err  error
}

// ticketErr is the error of a round of ticket requests that got fewer than k.
func (c *Client) ticketErr(errs []ticketAnswer, got int) error {
	K, L := c.m.Threshold, len(c.m.Nodes)
	locked, notLoggedIn := 0, false
	var msgs []string
	for _, a := range errs {
		switch {
		case errors.Is(a.err, ErrPINLocked):
			locked++
		case errors.Is(a.err, ErrNotLoggedIn):
			notLoggedIn = true
		}
		msgs = append(msgs, a.err.Error())
	}
	sort.Strings(msgs)
	detail := strings.Join(msgs, "; ")
	switch {
	case locked > L-K:
		return fmt.Errorf("%w: locked on %d of %d nodes (%s)", ErrPINLocked, locked, L, detail)
	case notLoggedIn:
		return fmt.Errorf("%w: the dealer needs the login tickets of %d nodes, %d gave one (%s)", ErrNotLoggedIn, K, got, detail)
	}
	return fmt.Errorf("%w: the dealer needs the login tickets of %d nodes, %d gave one (%s)", ErrNotEnoughNodes, K, got, detail)
}

// dealerCall sends a request that changes keys to the dealer, with the login tickets of k
// nodes (WithTickets). When the dealer refuses the tickets (one expired on the way), it asks
// once more with new ones.
func (c *Client) dealerCall(ctx context.Context, body proto.Message) (*trust.Opened, error) {
	if len(c.m.Dealers) == 0 {
		return nil, fmt.Errorf("%w: the manifest names no dealer", ErrUnavailable)
	}
	bt := tchsmpb.BodyTypeOf(body)
	raw, err := proto.Marshal(body)
	if err != nil {
		return nil, err
	}
	for again := false; ; again = true {
		ts, err := c.loginTickets(ctx)
		if err != nil {
			return nil, err
		}
		w := &tchsmpb.WithTickets{Tickets: ts, Type: bt, Body: raw}
		trust.SignTicketed(c.login.ticketKey, c.m.ClusterID, c.self.ID, w)
		op, err := c.rawCall(ctx, c.m.Dealers[0], transport.Dealer, w)
		if again || !errors.Is(err, ErrNotLoggedIn) {
			return op, err
		}
		c.log.Info("the dealer refused the login tickets; asking the nodes for new ones", "err", err)
		c.login.mu.Lock()
		c.login.tickets = map[string]heldTicket{}
		c.login.ticketGen++
		c.login.mu.Unlock()
	}
}
