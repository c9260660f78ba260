package client

// Logins. A client whose nodes hold its PIN (node/login.go) proves it with Login: the PIN goes
// to every node, HPKE-encrypted to that node (trust.SealPIN), and each node that finds it right
// opens a login session whose key only this process and the node know. The client then wraps
// the requests that need a login (trust.NeedsLogin) in LoggedIn, MACed with that node's
// session key. The PIN stays in this process's memory while it is logged in, so that a node
// that forgot the session (it restarted) is logged in to again without the caller: once per
// NOT_LOGGED_IN answer, and never after a node found the PIN wrong (it may have been changed
// by another process: guessing again would only count failures). The nodes' login tickets,
// which the dealer asks for, are tickets.go's.

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

	"github.com/tchsm/tchsm/internal/rpc"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
)

// loginState is the client's side of its logins.
type loginState struct {
	mu       sync.Mutex
	pin      []byte              // nil: not logged in (or no automatic login again)
	sessions map[string]*session // by node id
	status   PINStatus
	relogin  map[string]*sync.Mutex // one login again at a time per node
	// ticketKey signs the requests to the dealer; tickets are the nodes' login tickets for it,
	// by node id, replaced (ticketGen counts up) at every login, PIN change and logout
	// (tickets.go).
	ticketKey ed25519.PrivateKey
	tickets   map[string]heldTicket
	ticketGen uint64
}

type session struct{ id, key []byte }

func (l *loginState) get(node string) *session {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sessions[node]
}

// PINNodeResult is one node's answer to a login, a PIN change or an unlock.
type PINNodeResult struct {
	Node string
	// Status is ok, incorrect, locked, no_verifier, or "" when the node did not answer (Err).
	Status             string
	Failures, MaxFails int
	Err                error

	ticket *tchsmpb.LoginTicket // the node's login ticket, if it sent one
}

// call sends body to member node at address at (see rpc.Caller.Call). A sealed Error answer
// comes back as an *rpc.Error, which errors.Is maps to the backend errors. A request to a node
// that needs a login goes under this process's session with the node when it has one; when
// the node answers NOT_LOGGED_IN (it restarted, or never saw this login) and the client is
// logged in, it logs in to that node again and asks once more.
func (c *Client) call(ctx context.Context, node trust.Member, at transport.Address, body proto.Message) (*trust.Opened, error) {
	bt := tchsmpb.BodyTypeOf(body)
	if node.Role != trust.RoleNode || !trust.MayBeLoggedIn(bt) {
		return c.rawCall(ctx, node, at, body)
	}
	s := c.login.get(node.ID)
	op, err := c.callAs(ctx, node, at, bt, body, s)
	if !errors.Is(err, ErrNotLoggedIn) {
		return op, err
	}
	s2, lerr := c.loginAgain(ctx, node, s)
	if lerr != nil || s2 == nil {
		return op, err
	}
	return c.callAs(ctx, node, at, bt, body, s2)
}

func (c *Client) callAs(ctx context.Context, node trust.Member, at transport.Address, bt tchsmpb.BodyType, body proto.Message, s *session) (*trust.Opened, error) {
	if s == nil {
		return c.rawCall(ctx, node, at, body)
	}
	raw, err := proto.Marshal(body)
	if err != nil {
		return nil, err
	}
	w := &tchsmpb.LoggedIn{Session: s.id, Type: bt, Body: raw, Mac: trust.LoginMAC(s.key, s.id, bt, raw)}
	return c.rawCall(ctx, node, at, w)
}

// loginAgain logs in to one node again with the PIN kept in memory, unless another call did
// since stale was the session (then that one is returned).
func (c *Client) loginAgain(ctx context.Context, node trust.Member, stale *session) (*session, error) {
	l := &c.login
	l.mu.Lock()
	mu := l.relogin[node.ID]
	if mu == nil {
		mu = new(sync.Mutex)
		l.relogin[node.ID] = mu
	}
	l.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	l.mu.Lock()
	cur, pin := l.sessions[node.ID], bytes.Clone(l.pin)
	l.mu.Unlock()
	defer clear(pin)
	if cur != nil && cur != stale {
		return cur, nil
	}
	if pin == nil {
		return nil, ErrNotLoggedIn
	}
	// The login outlives the request that found the session gone: that request is often
	// cancelled as soon as the other nodes completed its signature, and a login cut short
	// there would leave the node with a session the client never learns, again at every ask,
	// so that a restarted node would never sign again while the others keep up.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.signTimeout())
	defer cancel()
	r, s := c.pinCall(lctx, node, trust.PINPurposeLogin, &tchsmpb.PINSecret{Pin: pin})
	l.mu.Lock()
	defer l.mu.Unlock()
	switch r.Status {
	case "ok":
		if l.pin != nil { // not logged out meanwhile
			l.sessions[node.ID] = s
		}
		c.log.Info("logged in to a node again", "node", node.ID)
		return s, nil
	case "incorrect", "locked":
		// The PIN changed elsewhere, or the client was locked: stop logging in by itself.
		clear(l.pin)
		l.pin = nil
		c.log.Warn("logging in to a node again failed; log in again", "node", node.ID, "status", r.Status)
	}
	return nil, fmt.Errorf("%w: %s: %s %v", ErrNotLoggedIn, node.ID, r.Status, r.Err)
}

// pinCall sends one PIN ciphertext (a PINLogin or a PINChange) to node.
func (c *Client) pinCall(ctx context.Context, node trust.Member, purpose string, sec *tchsmpb.PINSecret) (PINNodeResult, *session) {
	r := PINNodeResult{Node: node.ID}
	enc, ct, key, err := trust.SealPIN(node, c.m.ClusterID, c.self.ID, purpose, sec)
	if err != nil {
		r.Err = err
		return r, nil
	}
	tk := c.ticketPub()
	var body proto.Message = &tchsmpb.PINLogin{Enc: enc, Ciphertext: ct, TicketKey: tk}
	if purpose == trust.PINPurposeChange {
		body = &tchsmpb.PINChange{Enc: enc, Ciphertext: ct, TicketKey: tk}
	}
	op, err := c.rawCall(ctx, node, transport.Node(node.ID), body)
	return c.pinAnswer(r, op, err, key)
}

func (c *Client) pinAnswer(r PINNodeResult, op *trust.Opened, err error, key []byte) (PINNodeResult, *session) {
	if err != nil {
		var re *rpc.Error
		if errors.As(err, &re) && re.Code == tchsmpb.Error_PIN_LOCKED {
			r.Status = "locked"
		}
		r.Err = err
		return r, nil
	}
	res, ok := op.Message.(*tchsmpb.PINResult)
	if !ok {
		r.Err = fmt.Errorf("%s answered %v", r.Node, op.Type)
		return r, nil
	}
	r.Failures, r.MaxFails = int(res.GetFailures()), int(res.GetMaxFailures())
	r.ticket = res.GetTicket()
	switch res.GetStatus() {
	case tchsmpb.PINResult_OK:
		r.Status = "ok"
		if len(res.GetSession()) == trust.SessionIDSize && key != nil {
			return r, &session{id: bytes.Clone(res.GetSession()), key: key}
		}
	case tchsmpb.PINResult_INCORRECT:
		r.Status = "incorrect"
	case tchsmpb.PINResult_LOCKED:
		r.Status = "locked"
	case tchsmpb.PINResult_NO_VERIFIER:
		r.Status = "no_verifier"
	default:
		r.Err = fmt.Errorf("%s: unknown PIN status %v", r.Node, res.GetStatus())
	}
	return r, nil
}

// pinRound sends a PIN ciphertext to every node at once. It waits for every answer, except
// that it stops waiting, as a signature does, once the liveness view knows that fewer than k
// nodes answer, or once k nodes accepted and the others stayed silent for the liveness window
// (a hung node is logged in again when it answers: call's re-login).
func (c *Client) pinRound(ctx context.Context, purpose string, sec *tchsmpb.PINSecret) ([]PINNodeResult, map[string]*session) {
	ctx, cancel := withDefault(ctx, c.signTimeout())
	defer cancel()
	K := c.m.Threshold
	out := make([]PINNodeResult, len(c.m.Nodes))
	sessions := map[string]*session{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, n := range c.m.Nodes {
		out[i] = PINNodeResult{Node: n.ID}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, s := c.pinCall(ctx, n, purpose, sec)
			mu.Lock()
			out[i] = r
			if s != nil {
				sessions[n.ID] = s
			}
			mu.Unlock()
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	begun := time.Now()
	tick := time.NewTicker(probeGap)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
			continue
		case <-c.live.wait():
		case <-tick.C:
		}
		mu.Lock()
		accepted := len(sessions)
		mu.Unlock()
		if c.short(K) != nil || (accepted >= K && time.Since(begun) > c.silentWindow()) {
			cancel()
			<-done
			waiting = false
		}
	}
	return out, sessions
}

// pinOutcome is the PINStatus and the error of a round of PIN answers: nil when at least k
// nodes accept (ok, or no PIN held) and at least one checked the PIN; ErrNoPINVerifier when
// every node that answered holds none; ErrPINLocked when more than n−k are locked; else
// ErrPINIncorrect when a node found it wrong; else ErrNotEnoughNodes.
func (c *Client) pinOutcome(rs []PINNodeResult) (PINStatus, error) {
	K, L := c.m.Threshold, len(c.m.Nodes)
	st := PINStatus{Known: true, Remaining: -1}
	count := map[string]int{}
	var msgs, answering, silent []string
	for _, r := range rs {
		count[r.Status]++
		if r.Status != "" && r.Status != "no_verifier" {
			st.Failures = max(st.Failures, r.Failures)
			if r.Status != "locked" && r.MaxFails > 0 && (st.Remaining < 0 || r.MaxFails-r.Failures < st.Remaining) {
				st.Remaining = r.MaxFails - r.Failures
			}
		}
		switch {
		case r.Err != nil:
			silent = append(silent, fmt.Sprintf("%s (%v)", r.Node, r.Err))
		case r.Status != "ok":
			answering = append(answering, r.Node)
			msgs = append(msgs, fmt.Sprintf("%s: %s (%d of %d failures)", r.Node, r.Status, r.Failures, r.MaxFails))
		default:
			answering = append(answering, r.Node)
		}
	}
	sort.Strings(msgs)
	detail := strings.Join(msgs, "; ")
	st.Remaining = max(st.Remaining, 0)
	ok, none := count["ok"], count["no_verifier"]
	strangers := 0
	for _, r := range rs {
		if strangerRefusal(r.Err) {
			strangers++
		}
	}
	switch {
	case strangers > L-K:
		return st, fmt.Errorf("%w: %d of %d nodes refuse client %s as a sender not in their manifest: it was removed from the cluster (a manifest update revoked it)", ErrRevoked, strangers, L, c.self.ID)
	case ok > 0 && ok+none >= K:
		return st, nil
	case ok == 0 && none >= K:
		st.Known = false
		return st, fmt.Errorf("%w (%d of %d nodes)", ErrNoPINVerifier, none, L)
	case count["locked"] > L-K:
		st.Locked = true
		return st, fmt.Errorf("%w: locked on %d of %d nodes (%s)", ErrPINLocked, count["locked"], L, detail)
	case count["incorrect"] > 0:
		return st, fmt.Errorf("%w (%s)", ErrPINIncorrect, detail)
	}
	// Too few answered: name the nodes that answer and those that do not, as a signature
	// that finds too few nodes does.
	sort.Strings(answering)
	sort.Strings(silent)
	names := "answering: " + strings.Join(answering, ", ") + "; no answer from " + strings.Join(silent, ", ")
	if detail != "" {
		names += "; " + detail
	}
	detail = names
	return st, fmt.Errorf("%w: %d of %d nodes accepted the PIN, %d needed (%s)", ErrNotEnoughNodes, ok+none, L, K, detail)
}

// Login proves pin to the nodes (C_Login, the tchsm command). On success the client is
// logged in until Logout or Close, and keeps pin in memory to log in to a restarted node again.
func (c *Client) Login(ctx context.Context, pin []byte) (PINStatus, error) {
	rs, sessions := c.pinRound(ctx, trust.PINPurposeLogin, &tchsmpb.PINSecret{Pin: pin})
	st, err := c.pinOutcome(rs)
	l := &c.login
	l.mu.Lock()
	defer l.mu.Unlock()
	if st.Known || err == nil {
		l.status = st
	}
	if err != nil {
		return st, err
	}
	for _, s := range l.sessions {
		clear(s.key)
	}
	l.sessions = sessions
	c.keepTicketsLocked(rs)
	clear(l.pin)
	l.pin = bytes.Clone(pin)
	for _, r := range rs {
		if r.Status != "ok" && r.Status != "no_verifier" {
			c.log.Warn("a node did not accept the login", "node", r.Node, "status", r.Status, "err", r.Err)
		}
	}
	return st, nil
}

// Logout forgets the login sessions and the PIN (C_Logout). The nodes forget the sessions
// when they go unused.
func (c *Client) Logout() {
	l := &c.login
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.sessions {
		clear(s.key)
	}
	l.sessions = map[string]*session{}
	l.tickets = map[string]heldTicket{}
	l.ticketGen++
	clear(l.pin)
	l.pin = nil
}

// PINStatus is what the nodes said at the last login or PIN change.
func (c *Client) PINStatus() PINStatus {
	c.login.mu.Lock()
	defer c.login.mu.Unlock()
	return c.login.status
}

// ChangePIN replaces the PIN on every node that accepts oldPIN (C_SetPIN, `tchsm pin change`);
// an empty oldPIN sets the first PIN on nodes that hold none (`tchsm pin set`, the migration
// of a cluster created before the nodes checked PINs). It succeeds when at least k nodes
// changed it; results says what each node answered, so that the caller can name the nodes to
// change again later. On success the client is logged in with newPIN.
func (c *Client) ChangePIN(ctx context.Context, oldPIN, newPIN []byte) (PINStatus, error) {
	st, _, err := c.ChangePINResults(ctx, oldPIN, newPIN)
	return st, err
}

// ChangePINResults is ChangePIN with every node's answer.
func (c *Client) ChangePINResults(ctx context.Context, oldPIN, newPIN []byte) (PINStatus, []PINNodeResult, error) {
	if len(newPIN) == 0 {
		return PINStatus{}, nil, fmt.Errorf("%w: empty new PIN", ErrInvalidInput)
	}
	rs, sessions := c.pinRound(ctx, trust.PINPurposeChange, &tchsmpb.PINSecret{Pin: oldPIN, NewPin: newPIN})
	st, err := c.pinOutcome(rs)
	if err == nil && len(sessions) < c.m.Threshold {
		err = fmt.Errorf("%w: %d of %d nodes changed the PIN, %d needed", ErrNotEnoughNodes, len(sessions), len(c.m.Nodes), c.m.Threshold)
	}
	l := &c.login
	l.mu.Lock()
	defer l.mu.Unlock()
	l.status = st
	if err != nil {
		return st, rs, err
	}
	for _, s := range l.sessions {
		clear(s.key)
	}
	l.sessions = sessions
	c.keepTicketsLocked(rs)
	clear(l.pin)
	l.pin = bytes.Clone(newPIN)
	return st, rs, nil
}

// Unlock lifts the lock of client on every node (an admin client, logged in: `tchsm pin
// unlock`). It fails when no node unlocked it.
func (c *Client) Unlock(ctx context.Context, client string) ([]PINNodeResult, error) {
	if err := c.may(tchsmpb.BodyType_BODY_TYPE_PIN_UNLOCK, "unlocking a client"); err != nil {
		return nil, err
	}
	ctx, cancel := withDefault(ctx, c.signTimeout())
	defer cancel()
	out := make([]PINNodeResult, len(c.m.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.m.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			op, err := c.call(ctx, n, transport.Node(n.ID), &tchsmpb.PINUnlock{Client: client})
			out[i], _ = c.pinAnswer(PINNodeResult{Node: n.ID}, op, err, nil)
		}()
	}
	wg.Wait()
	ok := 0
	var msgs []string
	for _, r := range out {
		if r.Status == "ok" {
			ok++
		} else {
			msgs = append(msgs, fmt.Sprintf("%s: %s %v", r.Node, r.Status, r.Err))
		}
	}
	if ok == 0 {
		var first error
		for _, r := range out {
			if r.Err != nil {
				first = r.Err
				break
			}
		}
		if errors.Is(first, ErrNotLoggedIn) || errors.Is(first, ErrUnauthorized) || errors.Is(first, ErrPINLocked) {
			return out, fmt.Errorf("no node unlocked %s: %w", client, first)
		}
		return out, fmt.Errorf("%w: no node unlocked %s (%s)", ErrNotEnoughNodes, client, strings.Join(msgs, "; "))
	}
	return out, nil
}
