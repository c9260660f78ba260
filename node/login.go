package node

// # PINs and logins
//
// The node holds, per client, a PIN verifier (a salted argon2id hash, internal/pin) and a
// consecutive-failure counter, sealed in its share store (store.PIN), so that a restart does
// not reset the counter and a copy of the node's folder without its passphrase does not give
// the verifier away. A client proves its PIN with PINLogin: the PIN is HPKE-encrypted to this
// node (trust.SealPIN: the info binds cluster, client, node and purpose, the plaintext carries
// a time and a nonce). The node counts the attempt as a failure and stores the count before it
// checks the PIN (a check cut short by a crash or a time-out still counts), then resets the
// count when the PIN was right. At PINLimit consecutive failures the client is locked: every
// login, change and request that needs a login is refused with PIN_LOCKED until an admin
// client sends PINUnlock.
//
// A right PIN opens a login session: a random 16-byte id, returned in PINResult, and a key
// both ends export from the login's HPKE context, which never travels. Requests that need a
// login (sign, batch, proof, key generation, unlock) then come wrapped in LoggedIn, whose MAC
// under the session key covers the session id, the inner type and the inner bytes. A captured
// PINLogin sent again opens a session whose key nobody else knows; a captured LoggedIn sent
// again in a new envelope asks for exactly the same thing again. Sessions live in memory: they
// end with the node's process (the client logs in again by itself), with a PIN change or a
// lock, and after sessionIdle unused; a client holds at most maxSessions at once (the oldest
// goes first).
//
// A client for which the node holds no verifier (a cluster created before the nodes checked
// PINs) is served as before, and the node warns once per client: `tchsm pin set` installs the
// verifiers (PINChange with an empty current PIN, accepted only while there is none).
//
// The dealer holds no PINs: it asks for the nodes' word, login tickets (internal/trust
// ticket.go). A PINLogin or PINChange that names a ticket key is answered, when the PIN is
// right, with a LOGGED_IN ticket signed by this node; a PINLogin without a PIN asks for a
// ticket only: under a live session (LoggedIn) it gets a LOGGED_IN one without the PIN being
// sent again, and sent bare it gets a NO_VERIFIER one from a node that holds no PIN for the
// client, NOT_LOGGED_IN from one that does.

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/internal/pin"
	"github.com/tchsm/tchsm/internal/rpc"
	"github.com/tchsm/tchsm/internal/trust"
	"github.com/tchsm/tchsm/node/store"
	tchsmpb "github.com/tchsm/tchsm/proto"
)

const (
	sessionIdle = 12 * time.Hour
	maxSessions = 64 // per client
)

type loginSession struct {
	client string
	key    []byte
	opened time.Time
	used   time.Time
}

// logins is the node's PIN state: the stored PINs (cached) and the open sessions.
type logins struct {
	mu       sync.Mutex
	pins     map[string]store.PIN
	sessions map[string]*loginSession // by session id
	warned   map[string]bool
}

// loadPINs reads the stored PINs and installs the initial ones of clients that have none.
func (n *node) loadPINs() error {
	pins, err := n.store.PINs()
	if err != nil {
		return err
	}
	n.logins = &logins{pins: pins, sessions: map[string]*loginSession{}, warned: map[string]bool{}}
	if n.cfg.InitialPINs == "" {
		return nil
	}
	raw, err := os.ReadFile(n.cfg.InitialPINs)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node: initial PINs: %w", err)
	}
	var f trust.InitialPINs
	if err := json.Unmarshal(raw, &f); err != nil || f.Version != 1 || f.Node != n.id.ID {
		return fmt.Errorf("node: initial PINs %s: not a version 1 file for %s", n.cfg.InitialPINs, n.id.ID)
	}
	for client, sp := range f.Clients {
		if _, has := pins[client]; has {
			continue
		}
		if mem, ok := n.manifest().Lookup(client); !ok || mem.Role != trust.RoleClient {
			return fmt.Errorf("node: initial PINs: %.64q is not a client of the manifest", client)
		}
		sec, key, err := trust.OpenPIN(n.id, n.manifest().ClusterID, client, trust.PINPurposeInitial, sp.Enc, sp.Ciphertext)
		clear(key)
		if err != nil {
			return fmt.Errorf("node: initial PIN of %s: %w", client, err)
		}
		h, err := pin.Hash(string(sec.Pin))
		clear(sec.Pin)
		if err != nil {
			return fmt.Errorf("node: initial PIN of %s: %w", client, err)
		}
		p := store.PIN{Verifier: h}
		if err := n.store.PutPIN(client, p); err != nil {
			return err
		}
		pins[client] = p
		n.log.Info("initial PIN installed", "client", client)
	}
	return nil
}

// unwrap is the rpc server's Unwrap: it opens LoggedIn wrappers and refuses, from a client the
// node holds a PIN for, the requests that need a login and came without one.
func (n *node) unwrap(op *trust.Opened) (*trust.Opened, *rpc.Failure) {
	if op.Sender.Role != trust.RoleClient {
		return op, nil
	}
	client := op.Sender.ID
	l := n.logins
	if op.Type != tchsmpb.BodyType_BODY_TYPE_LOGGED_IN {
		if !trust.NeedsLogin(op.Type) || !trust.Permits(op.Sender, op.Type) {
			return op, nil // the rpc server refuses what the client's role may not send
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		p, has := l.pins[client]
		switch {
		case !has:
			if !l.warned[client] {
				l.warned[client] = true
				n.log.Warn("client served without a login: this node holds no PIN for it (tchsm pin set installs one)", "client", client)
			}
			return op, nil
		case p.Locked:
			return nil, n.lockedFailure(client)
		}
		return nil, rpc.Fail(tchsmpb.Error_NOT_LOGGED_IN, "", "%s: %v needs a login (C_Login, or the PIN for the tchsm command)", n.id.ID, op.Type)
	}
	w := op.Message.(*tchsmpb.LoggedIn)
	inner := w.GetType()
	if !tchsmpb.KnownBodyType(inner) {
		return nil, rpc.Unsupported(inner)
	}
	if !trust.MayBeLoggedIn(inner) {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "%v is not sent under a login", inner)
	}
	if len(w.GetSession()) != trust.SessionIDSize || len(w.GetMac()) != 32 {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "bad login session or MAC length")
	}
	now := time.Now()
	l.mu.Lock()
	s := l.sessions[string(w.GetSession())]
	p, has := l.pins[client]
	valid := s != nil && s.client == client && now.Sub(s.used) < sessionIdle &&
		trust.CheckLoginMAC(s.key, w.GetSession(), inner, w.GetBody(), w.GetMac())
	if valid {
		s.used = now
	}
	l.mu.Unlock()
	switch {
	case has && p.Locked:
		return nil, n.lockedFailure(client)
	case !valid:
		return nil, rpc.Fail(tchsmpb.Error_NOT_LOGGED_IN, "", "%s: unknown or expired login session; log in again", n.id.ID)
	}
	msg, err := tchsmpb.NewBody(inner)
	if err != nil {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "%v", err)
	}
	if err := proto.Unmarshal(w.GetBody(), msg); err != nil {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "the logged-in request is not a %v", inner)
	}
	out := *op
	out.Type, out.Body, out.Message, out.LoggedIn = inner, w.GetBody(), msg, true
	return &out, nil
}

func (n *node) lockedFailure(client string) *rpc.Failure {
	return rpc.Fail(tchsmpb.Error_PIN_LOCKED, "", "%s: client %s is locked after %d wrong PINs; an admin client unlocks it (tchsm pin unlock %s)", n.id.ID, client, n.cfg.PINLimit(), client)
}

// openPIN opens a PIN ciphertext from op's sender and checks its time.
func (n *node) openPIN(op *trust.Opened, purpose string, enc, ct []byte) (*tchsmpb.PINSecret, []byte, *rpc.Failure) {
	sec, key, err := trust.OpenPIN(n.id, n.manifest().ClusterID, op.Sender.ID, purpose, enc, ct)
	if err != nil {
		return nil, nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "the PIN ciphertext does not open for %s", n.id.ID)
	}
	at := time.Unix(0, sec.GetIssuedAt())
	if d := time.Since(at); d > trust.DefaultMaxTTL+trust.DefaultSkew || d < -trust.DefaultSkew || at.Before(n.started.Add(-trust.DefaultSkew)) {
		clear(sec.Pin)
		clear(sec.NewPin)
		clear(key)
		return nil, nil, rpc.Fail(tchsmpb.Error_EXPIRED, "", "the PIN was sealed outside this node's window")
	}
	if len(sec.Pin) > pin.MaxPINLen || len(sec.NewPin) > pin.MaxPINLen {
		clear(sec.Pin)
		clear(sec.NewPin)
		clear(key)
		return nil, nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "PIN too long")
	}
	return sec, key, nil
}

func (n *node) pinResult(st tchsmpb.PINResult_Status, p store.PIN) *tchsmpb.PINResult {
	return &tchsmpb.PINResult{Status: st, Node: n.id.ID, Failures: p.Failures, MaxFailures: uint32(n.cfg.PINLimit())}
}

// checkPINLocked checks pinText against client's stored PIN, counting the attempt first (see
// the package comment above). l.mu is held.
func (n *node) checkPINLocked(client string, p store.PIN, pinText []byte) (store.PIN, tchsmpb.PINResult_Status, *rpc.Failure) {
	if p.Locked {
		return p, tchsmpb.PINResult_LOCKED, nil
	}
	before := p
	p.Failures++
	if int(p.Failures) >= n.cfg.PINLimit() {
		p.Locked = true
	}
	if err := n.store.PutPIN(client, p); err != nil {
		return before, 0, rpc.Fail(tchsmpb.Error_UNAVAILABLE, "", "store unavailable")
	}
	n.logins.pins[client] = p
	ok, err := pin.Verify(p.Verifier, string(pinText))
	if err != nil {
		n.log.Error("stored PIN verifier unusable", "client", client, "err", err)
		return p, 0, rpc.Fail(tchsmpb.Error_INTERNAL, "", "PIN verifier unusable")
	}
	if !ok {
		if p.Locked {
			n.dropSessionsLocked(client)
			n.log.Warn("client locked after consecutive wrong PINs", "client", client, "failures", p.Failures)
			return p, tchsmpb.PINResult_LOCKED, nil
		}
		n.log.Warn("wrong PIN", "client", client, "failures", p.Failures, "max", n.cfg.PINLimit())
		return p, tchsmpb.PINResult_INCORRECT, nil
	}
	p.Failures, p.Locked = 0, false
	if err := n.store.PutPIN(client, p); err != nil {
		return p, 0, rpc.Fail(tchsmpb.Error_UNAVAILABLE, "", "store unavailable")
	}
	n.logins.pins[client] = p
	return p, tchsmpb.PINResult_OK, nil
}

func (n *node) dropSessionsLocked(client string) {
	for id, s := range n.logins.sessions {
		if s.client == client {
			clear(s.key)
			delete(n.logins.sessions, id)
		}
	}
}

// openSessionLocked opens a login session for client with key and returns its id.
func (n *node) openSessionLocked(client string, key []byte) []byte {
	l := n.logins
	now := time.Now()
	var oldest string
	count := 0
	for id, s := range l.sessions {
		if now.Sub(s.used) >= sessionIdle {
			clear(s.key)
			delete(l.sessions, id)
			continue
		}
		if s.client == client {
			count++
			if oldest == "" || s.opened.Before(l.sessions[oldest].opened) {
				oldest = id
			}
		}
	}
	if count >= maxSessions {
		clear(l.sessions[oldest].key)
		delete(l.sessions, oldest)
	}
	id := make([]byte, trust.SessionIDSize)
	rand.Read(id)
	l.sessions[string(id)] = &loginSession{client: client, key: key, opened: now, used: now}
	return id
}

// withTicket adds to res, when the request named a ticket key, this node's ticket of kind for
// op's sender (see internal/trust/ticket.go).
func (n *node) withTicket(res *tchsmpb.PINResult, op *trust.Opened, kind tchsmpb.TicketStatement_Kind, ticketKey []byte) (*tchsmpb.PINResult, *rpc.Failure) {
	if len(ticketKey) == 0 {
		return res, nil
	}
	t, err := trust.IssueTicket(n.id, n.manifest().ClusterID, op.Sender.ID, kind, ticketKey, time.Now())
	if err != nil {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "no login ticket: %v", err)
	}
	res.Ticket = t
	return res, nil
}

// ticketOnly answers a PINLogin without a PIN: a ticket within a live login session (the
// session was checked by unwrap), or a NO_VERIFIER ticket when this node holds no PIN for
// the client.
func (n *node) ticketOnly(op *trust.Opened, m *tchsmpb.PINLogin) (proto.Message, *rpc.Failure) {
	if len(m.GetTicketKey()) == 0 {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "a PINLogin without a PIN asks for a ticket, and names no ticket key")
	}
	client := op.Sender.ID
	l := n.logins
	l.mu.Lock()
	p, has := l.pins[client]
	l.mu.Unlock()
	switch {
	case has && p.Locked:
		return nil, n.lockedFailure(client)
	case op.LoggedIn:
		return n.withTicket(n.pinResult(tchsmpb.PINResult_OK, p), op, tchsmpb.TicketStatement_LOGGED_IN, m.GetTicketKey())
	case has:
		return nil, rpc.Fail(tchsmpb.Error_NOT_LOGGED_IN, "", "%s: a login ticket needs a login (C_Login, or the PIN for the tchsm command)", n.id.ID)
	}
	return n.withTicket(n.pinResult(tchsmpb.PINResult_NO_VERIFIER, p), op, tchsmpb.TicketStatement_NO_VERIFIER, m.GetTicketKey())
}

func (n *node) pinLogin(op *trust.Opened, m *tchsmpb.PINLogin) (proto.Message, *rpc.Failure) {
	if len(m.GetEnc()) == 0 && len(m.GetCiphertext()) == 0 {
		return n.ticketOnly(op, m)
	}
	if op.LoggedIn {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "a PINLogin with a PIN is not sent under a login")
	}
	sec, key, f := n.openPIN(op, trust.PINPurposeLogin, m.GetEnc(), m.GetCiphertext())
	if f != nil {
		return nil, f
	}
	defer clear(sec.Pin)
	client := op.Sender.ID
	l := n.logins
	l.mu.Lock()
	defer l.mu.Unlock()
	p, has := l.pins[client]
	if !has {
		clear(key)
		return n.withTicket(n.pinResult(tchsmpb.PINResult_NO_VERIFIER, p), op, tchsmpb.TicketStatement_NO_VERIFIER, m.GetTicketKey())
	}
	p, st, f := n.checkPINLocked(client, p, sec.Pin)
	if f != nil || st != tchsmpb.PINResult_OK {
		clear(key)
		if f != nil {
			return nil, f
		}
		return n.pinResult(st, p), nil
	}
	res := n.pinResult(st, p)
	res.Session = n.openSessionLocked(client, key)
	n.log.Info("client logged in", "client", client)
	return n.withTicket(res, op, tchsmpb.TicketStatement_LOGGED_IN, m.GetTicketKey())
}

func (n *node) pinChange(op *trust.Opened, m *tchsmpb.PINChange) (proto.Message, *rpc.Failure) {
	sec, key, f := n.openPIN(op, trust.PINPurposeChange, m.GetEnc(), m.GetCiphertext())
	if f != nil {
		return nil, f
	}
	defer clear(sec.Pin)
	defer clear(sec.NewPin)
	if len(sec.NewPin) == 0 {
		clear(key)
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "empty new PIN")
	}
	client := op.Sender.ID
	l := n.logins
	l.mu.Lock()
	defer l.mu.Unlock()
	p, has := l.pins[client]
	if has {
		var st tchsmpb.PINResult_Status
		if p, st, f = n.checkPINLocked(client, p, sec.Pin); f != nil || st != tchsmpb.PINResult_OK {
			clear(key)
			if f != nil {
				return nil, f
			}
			return n.pinResult(st, p), nil
		}
	} else if len(sec.Pin) != 0 {
		// A current PIN for a client without one: tell the client, count nothing.
		clear(key)
		return n.pinResult(tchsmpb.PINResult_NO_VERIFIER, p), nil
	}
	h, err := pin.Hash(string(sec.NewPin))
	if err != nil {
		clear(key)
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "new PIN: %v", err)
	}
	np := store.PIN{Verifier: h}
	if err := n.store.PutPIN(client, np); err != nil {
		clear(key)
		return nil, rpc.Fail(tchsmpb.Error_UNAVAILABLE, "", "store unavailable")
	}
	l.pins[client] = np
	n.dropSessionsLocked(client)
	if has {
		n.log.Info("PIN changed", "client", client)
	} else {
		n.log.Warn("first PIN set by the client itself (no PIN was installed for it)", "client", client)
	}
	res := n.pinResult(tchsmpb.PINResult_OK, np)
	res.Session = n.openSessionLocked(client, key)
	return n.withTicket(res, op, tchsmpb.TicketStatement_LOGGED_IN, m.GetTicketKey())
}

func (n *node) pinUnlock(op *trust.Opened, m *tchsmpb.PINUnlock) (proto.Message, *rpc.Failure) {
	client := m.GetClient()
	if mem, ok := n.manifest().Lookup(client); !ok || mem.Role != trust.RoleClient {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "%.64q is not a client of the manifest", client)
	}
	l := n.logins
	l.mu.Lock()
	defer l.mu.Unlock()
	p, has := l.pins[client]
	if !has {
		return n.pinResult(tchsmpb.PINResult_NO_VERIFIER, p), nil
	}
	was := p
	p.Failures, p.Locked = 0, false
	if err := n.store.PutPIN(client, p); err != nil {
		return nil, rpc.Fail(tchsmpb.Error_UNAVAILABLE, "", "store unavailable")
	}
	l.pins[client] = p
	n.log.Info("client unlocked", "client", client, "by", op.Sender.ID, "was_locked", was.Locked, "failures_were", was.Failures)
	return n.pinResult(tchsmpb.PINResult_OK, p), nil
}
