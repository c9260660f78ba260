package trust

// # Login tickets
//
// The nodes check the PIN (pin.go); the dealer, which holds no PINs, asks for the nodes' word
// instead. A node that has just checked a client's login (a PINLogin or PINChange with the
// right PIN, or a PINLogin without a PIN under a live login session) signs a LoginTicket of
// kind LOGGED_IN with its Ed25519 identity key; a node that holds no PIN for the client (a
// cluster created before the nodes checked PINs) signs one of kind NO_VERIFIER. A ticket names
// the cluster, the client, the node, a short validity (TicketLifetime) and the client
// process's ticket key: an Ed25519 key the process makes at start and keeps in memory only.
// The requests to the dealer that change keys (NeedsTickets) travel in WithTickets, with at
// least k tickets of distinct nodes, every one naming the sender and the one ticket key that
// signs the request (TicketedInput). So:
//
//   - Copies of a client's files (identity, client.json) without the PIN get no LOGGED_IN
//     ticket, and no NO_VERIFIER ticket from a node that holds a PIN: the dealer refuses
//     them exactly when the nodes refuse to sign for them. A cluster without PINs needs no
//     configuration: its nodes sign NO_VERIFIER tickets.
//   - A captured ticket is of no use to the thief of the client's identity alone: it needs
//     the ticket key, which never leaves the process that logged in; and it expires within
//     TicketLifetime. Within that time a captured WithTickets, sealed again in a new envelope
//     by the client's identity, asks for exactly the same thing again (as a LoggedIn does).
//   - A ticket outlives a lock, a PIN change, a logout or (NO_VERIFIER) the client's first PIN
//     by at most TicketLifetime.
//
// The dealer verifies k + 1 Ed25519 signatures per request, about 60 µs each
// (BenchmarkCheckTickets_2of3: 0.17 ms on a shared 2-core machine): as much as a few envelope
// checks, and far less than any of the requests it guards.

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	tchsmpb "github.com/tchsm/tchsm/proto"
)

const (
	ticketDomain   = "tchsm/v1/login-ticket"
	ticketedDomain = "tchsm/v1/with-tickets"
	// TicketLifetime is how long a login ticket is valid after its node issued it.
	TicketLifetime = 10 * time.Minute
	maxStatement   = 512
)

// Sentinel errors of the ticket checks.
var (
	ErrBadTicket            = errors.New("trust: bad login ticket")
	ErrNotEnoughTickets     = errors.New("trust: not enough valid login tickets")
	ErrBadTicketedSignature = errors.New("trust: bad signature under the ticket key")
)

// needsTickets are the requests a client sends to the dealer in WithTickets: what changes keys.
var needsTickets = map[tchsmpb.BodyType]bool{
	tchsmpb.BodyType_BODY_TYPE_GENERATE_KEY_REQUEST: true,
	tchsmpb.BodyType_BODY_TYPE_DELETE_KEY:           true,
	tchsmpb.BodyType_BODY_TYPE_RESTORE_KEY:          true,
	tchsmpb.BodyType_BODY_TYPE_DKG_LATE_DEALS:       true,
}

// NeedsTickets reports whether a client's request of type bt to the dealer must come in
// WithTickets.
func NeedsTickets(bt tchsmpb.BodyType) bool { return needsTickets[bt] }

// MayBeLoggedIn reports whether a LoggedIn wrapper may carry bt: the requests that need a
// login, and a PINLogin without a PIN (a ticket asked for within the session).
func MayBeLoggedIn(bt tchsmpb.BodyType) bool {
	return needsLogin[bt] || bt == tchsmpb.BodyType_BODY_TYPE_PIN_LOGIN
}

func ticketInput(node string, statement []byte) []byte {
	b := appendLPString(nil, ticketDomain)
	b = appendLPString(b, node)
	return appendLP(b, statement)
}

// IssueTicket signs, as node, a ticket of kind for client's process with ticket key
// ticketKey, valid for TicketLifetime from now.
func IssueTicket(node *Identity, clusterID, client string, kind tchsmpb.TicketStatement_Kind, ticketKey []byte, now time.Time) (*tchsmpb.LoginTicket, error) {
	if err := node.check(); err != nil {
		return nil, err
	}
	if node.Role != RoleNode {
		return nil, fmt.Errorf("%w: %s is a %s, not a node", ErrUnauthorized, node.ID, node.Role)
	}
	if len(ticketKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: ticket key of %d bytes", ErrBadTicket, len(ticketKey))
	}
	st := &tchsmpb.TicketStatement{
		ClusterId: clusterID, Client: client, Node: node.ID, Kind: kind,
		IssuedAt: now.UnixNano(), ExpiresAt: now.Add(TicketLifetime).UnixNano(), TicketKey: bytes.Clone(ticketKey),
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("trust: encoding ticket: %w", err)
	}
	return &tchsmpb.LoginTicket{Statement: b, Signature: ed25519.Sign(node.SignKey, ticketInput(node.ID, b))}, nil
}

// VerifyTicket checks that t was signed by a node of m for client in m's cluster, names a
// ticket key, and is valid at now (within DefaultSkew). It returns the statement.
func VerifyTicket(m *Manifest, client string, t *tchsmpb.LoginTicket, now time.Time) (*tchsmpb.TicketStatement, error) {
	if t == nil || len(t.GetStatement()) == 0 || len(t.GetStatement()) > maxStatement || len(t.GetSignature()) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: missing or bad lengths", ErrBadTicket)
	}
	st := new(tchsmpb.TicketStatement)
	if err := proto.Unmarshal(t.GetStatement(), st); err != nil {
		return nil, fmt.Errorf("%w: statement does not decode", ErrBadTicket)
	}
	n, ok := m.Lookup(st.GetNode())
	if !ok || n.Role != RoleNode {
		return nil, fmt.Errorf("%w: %.64q is not a node of the manifest", ErrBadTicket, st.GetNode())
	}
	if !ed25519.Verify(n.SignPub, ticketInput(n.ID, t.GetStatement()), t.GetSignature()) {
		return nil, fmt.Errorf("%w: signature of %s", ErrBadTicket, n.ID)
	}
	issued, expires := time.Unix(0, st.GetIssuedAt()), time.Unix(0, st.GetExpiresAt())
	switch {
	case st.GetClusterId() != m.ClusterID:
		return nil, fmt.Errorf("%w: for cluster %.64q", ErrBadTicket, st.GetClusterId())
	case st.GetClient() != client:
		return nil, fmt.Errorf("%w: %s's ticket is for %.64q", ErrBadTicket, n.ID, st.GetClient())
	case st.GetKind() != tchsmpb.TicketStatement_LOGGED_IN && st.GetKind() != tchsmpb.TicketStatement_NO_VERIFIER:
		return nil, fmt.Errorf("%w: kind %v", ErrBadTicket, st.GetKind())
	case len(st.GetTicketKey()) != ed25519.PublicKeySize:
		return nil, fmt.Errorf("%w: ticket key of %d bytes", ErrBadTicket, len(st.GetTicketKey()))
	case expires.Before(issued) || expires.Sub(issued) > TicketLifetime:
		return nil, fmt.Errorf("%w: %s's ticket is valid for more than %v", ErrBadTicket, n.ID, TicketLifetime)
	case issued.After(now.Add(DefaultSkew)) || now.After(expires.Add(DefaultSkew)):
		return nil, fmt.Errorf("%w: %s's ticket expired or is not valid yet", ErrBadTicket, n.ID)
	}
	return st, nil
}

// TicketedInput is what the ticket key signs in a WithTickets: the cluster, the client, the
// inner type and the inner body's exact bytes.
func TicketedInput(clusterID, client string, bt tchsmpb.BodyType, body []byte) []byte {
	b := appendLPString(nil, ticketedDomain)
	b = appendLPString(b, clusterID)
	b = appendLPString(b, client)
	b = binary.BigEndian.AppendUint32(b, uint32(bt))
	return appendLP(b, body)
}

// SignTicketed fills in w's ticket key and signature with key, for client in clusterID.
func SignTicketed(key ed25519.PrivateKey, clusterID, client string, w *tchsmpb.WithTickets) {
	w.TicketKey = bytes.Clone(key.Public().(ed25519.PublicKey))
	w.Signature = ed25519.Sign(key, TicketedInput(clusterID, client, w.GetType(), w.GetBody()))
}

// CheckTickets checks a WithTickets from client at now: its signature under its ticket key, and
// at least m.Threshold valid tickets (VerifyTicket) of distinct nodes naming that key. Tickets
// that do not count (invalid, another key, a second one of a node) are ignored. It returns the
// nodes whose tickets counted; the error, when fewer than k do, wraps ErrNotEnoughTickets and
// names the first reason.
func CheckTickets(m *Manifest, client string, w *tchsmpb.WithTickets, now time.Time) ([]string, error) {
	if len(w.GetTicketKey()) != ed25519.PublicKeySize || len(w.GetSignature()) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: bad ticket key or signature length", ErrBadTicketedSignature)
	}
	if len(w.GetTickets()) > MaxNodes {
		return nil, fmt.Errorf("%w: %d tickets", ErrBadTicket, len(w.GetTickets()))
	}
	if !ed25519.Verify(w.GetTicketKey(), TicketedInput(m.ClusterID, client, w.GetType(), w.GetBody()), w.GetSignature()) {
		return nil, ErrBadTicketedSignature
	}
	var nodes []string
	seen := map[string]bool{}
	var first error
	for _, t := range w.GetTickets() {
		st, err := VerifyTicket(m, client, t, now)
		switch {
		case err != nil:
		case !bytes.Equal(st.GetTicketKey(), w.GetTicketKey()):
			err = fmt.Errorf("%w: %s's ticket names another ticket key", ErrBadTicket, st.GetNode())
		case seen[st.GetNode()]:
			err = fmt.Errorf("%w: two tickets of %s", ErrBadTicket, st.GetNode())
		}
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		seen[st.GetNode()] = true
		nodes = append(nodes, st.GetNode())
	}
	if len(nodes) < m.Threshold {
		if first == nil {
			return nodes, fmt.Errorf("%w: %d of %d needed", ErrNotEnoughTickets, len(nodes), m.Threshold)
		}
		return nodes, fmt.Errorf("%w: %d of %d needed (%v)", ErrNotEnoughTickets, len(nodes), m.Threshold, first)
	}
	return nodes, nil
}
