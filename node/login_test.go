package node_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	"github.com/tchsm/tchsm/node"
	"github.com/tchsm/tchsm/node/nodetest"
	tchsmpb "github.com/tchsm/tchsm/proto"
)

// login sends a PINLogin for pin from peer to node 1 and returns the answer and the session
// key the peer derived.
func login(t *testing.T, c *nodetest.Cluster, p *nodetest.Peer, client, pin string) (*tchsmpb.PINResult, []byte, *tchsmpb.PINLogin) {
	t.Helper()
	enc, ct, key, err := trust.SealPIN(c.Manifest.Nodes[0], c.Manifest.ClusterID, client, trust.PINPurposeLogin, &tchsmpb.PINSecret{Pin: []byte(pin)})
	if err != nil {
		t.Fatal(err)
	}
	m := &tchsmpb.PINLogin{Enc: enc, Ciphertext: ct}
	op, err := p.CallNode(nodetest.Ctx(t, 5*time.Second), 1, tchsmpb.BodyType_BODY_TYPE_PIN_LOGIN, m)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	return op.Message.(*tchsmpb.PINResult), key, m
}

func loggedIn(session, key []byte, bt tchsmpb.BodyType, body proto.Message) *tchsmpb.LoggedIn {
	raw, _ := proto.Marshal(body)
	return &tchsmpb.LoggedIn{Session: session, Type: bt, Body: raw, Mac: trust.LoginMAC(key, session, bt, raw)}
}

// The node's side of PINs: requests that need a login are refused without one (listing is
// not), a login opens a session only the logging-in peer can use (a captured PINLogin sent
// again in a new envelope opens one whose key the replayer does not know), wrong PINs count
// and lock at the node's limit, the count survives a restart, a signer cannot unlock, an
// admin can.
func TestNodeLogin(t *testing.T) {
	c := nodetest.NewInMemory(t, nodetest.Options{K: 1, N: 1, Signers: 1, PIN: "4711"})
	c.Nodes[0].PINMaxFailures = 3
	c.StartNode(1, node.Options{})
	admin, signer := c.Peer("client-1"), c.Peer("signer-1")
	ctx := func() context.Context { return nodetest.Ctx(t, 5*time.Second) }
	sign := &tchsmpb.SignRequest{KeyId: "0123456789abcdef0123456789abcdef", Payload: []byte("T")}

	if _, err := admin.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_LIST_KEYS, &tchsmpb.ListKeys{}); err != nil {
		t.Fatalf("list without login: %v", err)
	}
	if _, err := admin.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, sign); nodetest.Code(err) != tchsmpb.Error_NOT_LOGGED_IN {
		t.Fatalf("sign without login: %v, want NOT_LOGGED_IN", err)
	}
	res, key, captured := login(t, c, admin, "client-1", "4711")
	if res.GetStatus() != tchsmpb.PINResult_OK || len(res.GetSession()) != trust.SessionIDSize || res.GetMaxFailures() != 3 {
		t.Fatalf("login: %v", res)
	}
	// Under the session: the key is unknown, which means the request got past the login.
	if _, err := admin.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_LOGGED_IN, loggedIn(res.Session, key, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, sign)); nodetest.Code(err) != tchsmpb.Error_UNKNOWN_KEY {
		t.Fatalf("sign under the login: %v, want UNKNOWN_KEY", err)
	}
	// A MAC under another key, a body other than the one MACed, or another client's session.
	bad := loggedIn(res.Session, bytes.Repeat([]byte{1}, 32), tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, sign)
	if _, err := admin.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_LOGGED_IN, bad); nodetest.Code(err) != tchsmpb.Error_NOT_LOGGED_IN {
		t.Fatalf("wrong session key: %v", err)
	}
	swapped := loggedIn(res.Session, key, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, sign)
	swapped.Body, _ = proto.Marshal(&tchsmpb.SignRequest{KeyId: sign.KeyId, Payload: []byte("other")})
	if _, err := admin.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_LOGGED_IN, swapped); nodetest.Code(err) != tchsmpb.Error_NOT_LOGGED_IN {
		t.Fatalf("body swapped: %v", err)
	}
	if _, err := signer.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_LOGGED_IN, loggedIn(res.Session, key, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, sign)); nodetest.Code(err) != tchsmpb.Error_NOT_LOGGED_IN {
		t.Fatalf("another client's session: %v", err)
	}
	// The captured PINLogin, in a new envelope (the replayer holds the client's identity):
	// the node opens a session, but its key is the original sender's, not the replayer's, so
	// the replayer can only use it with a key it does not have.
	op, err := admin.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_PIN_LOGIN, captured)
	if err != nil {
		t.Fatal(err)
	}
	replayed := op.Message.(*tchsmpb.PINResult)
	if _, err := admin.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_LOGGED_IN, loggedIn(replayed.Session, bytes.Repeat([]byte{2}, 32), tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, sign)); nodetest.Code(err) != tchsmpb.Error_NOT_LOGGED_IN {
		t.Fatalf("replayed login used: %v", err)
	}
	// The same envelope again is a replay.
	raw, _, _ := admin.Sealer.Seal(tchsmpb.BodyType_BODY_TYPE_PIN_LOGIN, captured, 10*time.Second)
	if _, err := admin.CallRaw(ctx(), "node-1", transport.Node("node-1"), raw); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CallRaw(ctx(), "node-1", transport.Node("node-1"), raw); err == nil {
		t.Fatal("the same PINLogin envelope was accepted twice")
	}

	// Wrong PINs: 1, 2 incorrect; 3 locks (limit 3). The right PIN is then refused too.
	for i, want := range []tchsmpb.PINResult_Status{tchsmpb.PINResult_INCORRECT, tchsmpb.PINResult_INCORRECT, tchsmpb.PINResult_LOCKED, tchsmpb.PINResult_LOCKED} {
		res, _, _ := login(t, c, signer, "signer-1", "0000")
		if res.GetStatus() != want || (i < 3 && int(res.GetFailures()) != i+1) {
			t.Fatalf("wrong PIN %d: %v, want %v", i+1, res, want)
		}
	}
	if res, _, _ := login(t, c, signer, "signer-1", "4711"); res.GetStatus() != tchsmpb.PINResult_LOCKED {
		t.Fatalf("right PIN while locked: %v", res)
	}
	if _, err := signer.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, sign); nodetest.Code(err) != tchsmpb.Error_PIN_LOCKED {
		t.Fatalf("sign while locked: %v, want PIN_LOCKED", err)
	}
	// The lock survives a restart.
	c.StopNode(1)
	c.StartNode(1, node.Options{})
	if res, _, _ := login(t, c, signer, "signer-1", "4711"); res.GetStatus() != tchsmpb.PINResult_LOCKED {
		t.Fatalf("after a restart: %v, want LOCKED", res)
	}
	// The admin's session ended with the restart.
	if _, err := admin.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_LOGGED_IN, loggedIn(res.Session, key, tchsmpb.BodyType_BODY_TYPE_PIN_UNLOCK, &tchsmpb.PINUnlock{Client: "signer-1"})); nodetest.Code(err) != tchsmpb.Error_NOT_LOGGED_IN {
		t.Fatalf("a session from before the restart: %v", err)
	}
	// A signer may not unlock (itself or anyone), even logged in; an admin may.
	if _, err := signer.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_PIN_UNLOCK, &tchsmpb.PINUnlock{Client: "signer-1"}); nodetest.Code(err) != tchsmpb.Error_UNAUTHORIZED {
		t.Fatalf("signer unlocks: %v, want UNAUTHORIZED", err)
	}
	if _, err := admin.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_PIN_UNLOCK, &tchsmpb.PINUnlock{Client: "signer-1"}); nodetest.Code(err) != tchsmpb.Error_NOT_LOGGED_IN {
		t.Fatalf("unlock without login: %v, want NOT_LOGGED_IN", err)
	}
	res, key, _ = login(t, c, admin, "client-1", "4711")
	op, err = admin.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_LOGGED_IN, loggedIn(res.Session, key, tchsmpb.BodyType_BODY_TYPE_PIN_UNLOCK, &tchsmpb.PINUnlock{Client: "signer-1"}))
	if err != nil || op.Message.(*tchsmpb.PINResult).GetStatus() != tchsmpb.PINResult_OK {
		t.Fatalf("admin unlock: %v %v", op, err)
	}
	if res, _, _ := login(t, c, signer, "signer-1", "4711"); res.GetStatus() != tchsmpb.PINResult_OK || res.GetFailures() != 0 {
		t.Fatalf("after the unlock: %v", res)
	}

	// A PIN change: the old PIN must be right (a wrong one counts), and the new one works.
	change := func(old, nw string) *tchsmpb.PINResult {
		enc, ct, _, err := trust.SealPIN(c.Manifest.Nodes[0], c.Manifest.ClusterID, "signer-1", trust.PINPurposeChange, &tchsmpb.PINSecret{Pin: []byte(old), NewPin: []byte(nw)})
		if err != nil {
			t.Fatal(err)
		}
		op, err := signer.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_PIN_CHANGE, &tchsmpb.PINChange{Enc: enc, Ciphertext: ct})
		if err != nil {
			t.Fatal(err)
		}
		return op.Message.(*tchsmpb.PINResult)
	}
	if r := change("0000", "9999"); r.GetStatus() != tchsmpb.PINResult_INCORRECT || r.GetFailures() != 1 {
		t.Fatalf("change with a wrong PIN: %v", r)
	}
	if r := change("4711", "9999"); r.GetStatus() != tchsmpb.PINResult_OK || len(r.GetSession()) != trust.SessionIDSize {
		t.Fatalf("change: %v", r)
	}
	if res, _, _ := login(t, c, signer, "signer-1", "9999"); res.GetStatus() != tchsmpb.PINResult_OK {
		t.Fatalf("new PIN: %v", res)
	}
	// A PIN ciphertext for another purpose does not open as a login.
	enc, ct, _, _ := trust.SealPIN(c.Manifest.Nodes[0], c.Manifest.ClusterID, "signer-1", trust.PINPurposeChange, &tchsmpb.PINSecret{Pin: []byte("9999")})
	if _, err := signer.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_PIN_LOGIN, &tchsmpb.PINLogin{Enc: enc, Ciphertext: ct}); nodetest.Code(err) != tchsmpb.Error_BAD_REQUEST {
		t.Fatalf("a change ciphertext as a login: %v", err)
	}
}

// A node without a PIN for a client (a cluster made before the nodes checked PINs) serves it
// as before; the client's first PINChange, with no current PIN, installs one, after which a
// login is needed.
func TestNodePINMigration(t *testing.T) {
	c := nodetest.NewInMemory(t, nodetest.Options{K: 1, N: 1})
	c.StartNode(1, node.Options{})
	p := c.Peer("client-1")
	ctx := func() context.Context { return nodetest.Ctx(t, 5*time.Second) }
	sign := &tchsmpb.SignRequest{KeyId: "0123456789abcdef0123456789abcdef", Payload: []byte("T")}
	if _, err := p.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, sign); nodetest.Code(err) != tchsmpb.Error_UNKNOWN_KEY {
		t.Fatalf("sign before migration: %v, want UNKNOWN_KEY (served)", err)
	}
	if res, _, _ := login(t, c, p, "client-1", "1234"); res.GetStatus() != tchsmpb.PINResult_NO_VERIFIER {
		t.Fatalf("login before migration: %v", res)
	}
	enc, ct, _, _ := trust.SealPIN(c.Manifest.Nodes[0], c.Manifest.ClusterID, "client-1", trust.PINPurposeChange, &tchsmpb.PINSecret{NewPin: []byte("1234")})
	op, err := p.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_PIN_CHANGE, &tchsmpb.PINChange{Enc: enc, Ciphertext: ct})
	if err != nil || op.Message.(*tchsmpb.PINResult).GetStatus() != tchsmpb.PINResult_OK {
		t.Fatalf("first PIN: %v %v", op, err)
	}
	if _, err := p.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, sign); nodetest.Code(err) != tchsmpb.Error_NOT_LOGGED_IN {
		t.Fatalf("sign after migration: %v, want NOT_LOGGED_IN", err)
	}
	// A second "first PIN" is a change without the current PIN: counted as wrong.
	enc, ct, _, _ = trust.SealPIN(c.Manifest.Nodes[0], c.Manifest.ClusterID, "client-1", trust.PINPurposeChange, &tchsmpb.PINSecret{NewPin: []byte("5555")})
	op, err = p.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_PIN_CHANGE, &tchsmpb.PINChange{Enc: enc, Ciphertext: ct})
	if err != nil || op.Message.(*tchsmpb.PINResult).GetStatus() != tchsmpb.PINResult_INCORRECT {
		t.Fatalf("second first PIN: %v %v", op, err)
	}
}

// The node's login tickets (internal/trust ticket.go): with a right PIN that names a ticket
// key, within a live session without the PIN, and NO_VERIFIER ones while it holds no PIN for
// the client; none without a login or under another client's session, no PIN under a session,
// and none for a locked client.
func TestNodeTickets(t *testing.T) {
	c := nodetest.NewInMemory(t, nodetest.Options{K: 1, N: 1, Signers: 1, PIN: "4711"})
	c.Nodes[0].PINMaxFailures = 2
	c.StartNode(1, node.Options{})
	admin, signer := c.Peer("client-1"), c.Peer("signer-1")
	ctx := func() context.Context { return nodetest.Ctx(t, 5*time.Second) }
	pub, _, _ := ed25519.GenerateKey(nil)
	check := func(what string, client string, res *tchsmpb.PINResult, kind tchsmpb.TicketStatement_Kind) {
		t.Helper()
		st, err := trust.VerifyTicket(c.Manifest, client, res.GetTicket(), time.Now())
		if err != nil || st.GetKind() != kind || !bytes.Equal(st.GetTicketKey(), pub) || st.GetNode() != "node-1" {
			t.Fatalf("%s: ticket %v %v", what, st, err)
		}
	}
	ask := &tchsmpb.PINLogin{TicketKey: pub}
	if _, err := admin.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_PIN_LOGIN, ask); nodetest.Code(err) != tchsmpb.Error_NOT_LOGGED_IN {
		t.Fatalf("a ticket without a login: %v, want NOT_LOGGED_IN", err)
	}
	// The login itself, naming the ticket key.
	enc, ct, key, _ := trust.SealPIN(c.Manifest.Nodes[0], c.Manifest.ClusterID, "client-1", trust.PINPurposeLogin, &tchsmpb.PINSecret{Pin: []byte("4711")})
	op, err := admin.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_PIN_LOGIN, &tchsmpb.PINLogin{Enc: enc, Ciphertext: ct, TicketKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	res := op.Message.(*tchsmpb.PINResult)
	check("login", "client-1", res, tchsmpb.TicketStatement_LOGGED_IN)
	session := res.GetSession()
	// Renewed within the session, without the PIN.
	op, err = admin.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_LOGGED_IN, loggedIn(session, key, tchsmpb.BodyType_BODY_TYPE_PIN_LOGIN, ask))
	if err != nil {
		t.Fatalf("ticket in the session: %v", err)
	}
	check("renewal", "client-1", op.Message.(*tchsmpb.PINResult), tchsmpb.TicketStatement_LOGGED_IN)
	// A PIN does not go under a session; a session of another client gives nothing.
	if _, err := admin.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_LOGGED_IN, loggedIn(session, key, tchsmpb.BodyType_BODY_TYPE_PIN_LOGIN, &tchsmpb.PINLogin{Enc: enc, Ciphertext: ct, TicketKey: pub})); nodetest.Code(err) != tchsmpb.Error_BAD_REQUEST {
		t.Fatalf("a PIN under a session: %v, want BAD_REQUEST", err)
	}
	if _, err := signer.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_LOGGED_IN, loggedIn(session, key, tchsmpb.BodyType_BODY_TYPE_PIN_LOGIN, ask)); nodetest.Code(err) != tchsmpb.Error_NOT_LOGGED_IN {
		t.Fatalf("the admin's session used by the signer: %v, want NOT_LOGGED_IN", err)
	}
	// A locked client gets no ticket.
	for range 2 {
		login(t, c, signer, "signer-1", "0000")
	}
	if _, err := signer.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_PIN_LOGIN, ask); nodetest.Code(err) != tchsmpb.Error_PIN_LOCKED {
		t.Fatalf("a ticket while locked: %v, want PIN_LOCKED", err)
	}

	// A node that holds no PIN for the client signs NO_VERIFIER tickets, bare or with a login.
	m := nodetest.NewInMemory(t, nodetest.Options{K: 1, N: 1})
	m.StartNode(1, node.Options{})
	p := m.Peer("client-1")
	op, err = p.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_PIN_LOGIN, ask)
	if err != nil || op.Message.(*tchsmpb.PINResult).GetStatus() != tchsmpb.PINResult_NO_VERIFIER {
		t.Fatalf("a ticket from a node without the PIN: %v %v", op, err)
	}
	if st, err := trust.VerifyTicket(m.Manifest, "client-1", op.Message.(*tchsmpb.PINResult).GetTicket(), time.Now()); err != nil || st.GetKind() != tchsmpb.TicketStatement_NO_VERIFIER {
		t.Fatalf("no-verifier ticket: %v %v", st, err)
	}
	if _, err := p.CallNode(ctx(), 1, tchsmpb.BodyType_BODY_TYPE_PIN_LOGIN, &tchsmpb.PINLogin{}); nodetest.Code(err) != tchsmpb.Error_BAD_REQUEST {
		t.Fatalf("an empty PINLogin: %v, want BAD_REQUEST", err)
	}
}
