package dealer_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/dealer"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	"github.com/tchsm/tchsm/node"
	"github.com/tchsm/tchsm/node/nodetest"
	tchsmpb "github.com/tchsm/tchsm/proto"
)

const (
	wt       = tchsmpb.BodyType_BODY_TYPE_WITH_TICKETS
	loggedIn = tchsmpb.TicketStatement_LOGGED_IN
)

func TestServiceGenerateAndDelete(t *testing.T) {
	c := nodetest.New(t, nodetest.Options{K: 2, N: 3})
	c.StartAll()
	d := c.Dealer(dealer.Options{Version: "v-test"})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- d.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	client := c.Peer("client-1")
	q := transport.Dealer
	var op *trust.Opened
	var err error
	// The service may take a moment to subscribe.
	for range 50 {
		op, err = client.Call(nodetest.Ctx(t, 10*time.Second), "dealer", q, tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST, &tchsmpb.HealthRequest{})
		if !errors.Is(err, transport.ErrNoRoute) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if h := op.Message.(*tchsmpb.Health); h.Node != "dealer" || h.Version != "v-test" {
		t.Fatalf("health %v", h)
	}

	op, err = client.Call(nodetest.Ctx(t, 60*time.Second), "dealer", q, wt,
		client.Ticketed(loggedIn, time.Now(), &tchsmpb.GenerateKeyRequest{Bits: 1024, Label: "svc", P11Id: []byte{9, 9}}, 1, 3))
	if err != nil {
		t.Fatal(err)
	}
	resp := op.Message.(*tchsmpb.GenerateKeyResponse)
	rec, pk := nodetest.RecordKey(t, c.Manifest, resp.Record)
	if !slices.Equal(resp.Acknowledged, []string{"node-1", "node-2", "node-3"}) || len(resp.Missing) != 0 {
		t.Fatalf("acked %v missing %v", resp.Acknowledged, resp.Missing)
	}
	if rec.Label != "svc" || !bytes.Equal(rec.P11Id, []byte{9, 9}) || rec.Bits != 1024 || pk.N.BitLen() != 1024 || !rec.SafePrimes ||
		rec.ClusterId != c.Manifest.ClusterID || rec.K != 2 || rec.N != 3 || time.Since(time.Unix(rec.CreatedUnix, 0)) > time.Minute {
		t.Fatalf("record %v", rec)
	}
	sig := nodetest.SignWith(t, client, pk, rec.KeyId, []byte("svc"), 3, 2)
	digest := sha256.Sum256([]byte("svc"))
	if err := rsa.VerifyPKCS1v15(pk.RSA(), crypto.SHA256, digest[:], sig); err != nil {
		t.Fatal(err)
	}

	// Requests the dealer refuses.
	for _, tc := range []struct {
		name string
		req  *tchsmpb.GenerateKeyRequest
	}{
		{"odd size", &tchsmpb.GenerateKeyRequest{Bits: 1025}},
		{"too small", &tchsmpb.GenerateKeyRequest{Bits: 512}},
		{"too large", &tchsmpb.GenerateKeyRequest{Bits: 8192}},
		{"even exponent", &tchsmpb.GenerateKeyRequest{Bits: 1024, PublicExponent: 65536}},
		{"exponent not above n", &tchsmpb.GenerateKeyRequest{Bits: 1024, PublicExponent: 3}},
		{"label too long", &tchsmpb.GenerateKeyRequest{Bits: 1024, Label: strings.Repeat("x", 300)}},
	} {
		_, err := client.Call(nodetest.Ctx(t, 10*time.Second), "dealer", q, wt, client.Ticketed(loggedIn, time.Now(), tc.req, 1, 2))
		if nodetest.Code(err) != tchsmpb.Error_BAD_REQUEST {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// Only clients are served; a node may not even send the request.
	dp := c.Peer("dealer")
	if _, err := dp.Call(nodetest.Ctx(t, 10*time.Second), "dealer", q, tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST, &tchsmpb.HealthRequest{}); nodetest.Code(err) != tchsmpb.Error_UNAUTHORIZED {
		t.Errorf("dealer asking the dealer: %v", err)
	}
	forged := nodetest.Forge(c.Identity("node-1"), c.Manifest.ClusterID, tchsmpb.BodyType_BODY_TYPE_GENERATE_KEY_REQUEST,
		&tchsmpb.GenerateKeyRequest{Bits: 1024}, time.Now(), time.Minute)
	if _, err := client.CallRaw(nodetest.Ctx(t, 10*time.Second), "dealer", q, forged); !errors.Is(err, transport.ErrRemote) {
		t.Errorf("node asking for a key: %v", err)
	}

	// Delete through the service.
	op, err = client.Call(nodetest.Ctx(t, 30*time.Second), "dealer", q, wt, client.Ticketed(loggedIn, time.Now(), &tchsmpb.DeleteKey{KeyId: rec.KeyId}, 2, 3))
	if err != nil {
		t.Fatal(err)
	}
	if ack := op.Message.(*tchsmpb.DeleteKeyAck); !ack.Ok || ack.Error != "" {
		t.Fatalf("ack %v", ack)
	}
	for i := 1; i <= 3; i++ {
		ids, err := client.KeyIDs(nodetest.Ctx(t, 5*time.Second), i)
		if err != nil || slices.Contains(ids, rec.KeyId) {
			t.Fatalf("node %d: %v %v", i, ids, err)
		}
	}
}

// An imported crypto/rsa key signs exactly like crypto/rsa.
func TestImport(t *testing.T) {
	c := nodetest.New(t, nodetest.Options{K: 2, N: 3})
	c.StartAll()
	d := c.Dealer(dealer.Options{NoPool: true})
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signed, acked, missing, err := d.Import(nodetest.Ctx(t, 60*time.Second), priv, "imported", []byte("id"))
	if err != nil || len(acked) != 3 || len(missing) != 0 {
		t.Fatalf("Import: %v, acked %v, missing %v", err, acked, missing)
	}
	rec, pk := nodetest.RecordKey(t, c.Manifest, signed)
	if rec.SafePrimes || pk.N.Cmp(priv.N) != 0 || pk.E != priv.E || rec.Bits != 2048 {
		t.Fatalf("record %v", rec)
	}
	client := c.Peer("client-1")
	msg := []byte("imported key")
	digest := sha256.Sum256(msg)
	want, err := rsa.SignPKCS1v15(nil, priv, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range [][]int{{1, 2}, {3, 1}} {
		if got := nodetest.SignWith(t, client, pk, rec.KeyId, msg, set...); !bytes.Equal(got, want) {
			t.Fatalf("nodes %v: signature differs from crypto/rsa", set)
		}
	}

	// Bad imports.
	if _, _, _, err := d.Import(nodetest.Ctx(t, 10*time.Second), nil, "", nil); !errors.Is(err, dealer.ErrInvalid) {
		t.Errorf("nil key: %v", err)
	}
	small := *priv
	small.E = 3
	if _, _, _, err := d.Import(nodetest.Ctx(t, 10*time.Second), &small, "", nil); !errors.Is(err, dealer.ErrInvalid) {
		t.Errorf("e=3 with n=3: %v", err)
	}
}

// The pool fills in the background, and GenerateKey uses it.
func TestPool(t *testing.T) {
	c := nodetest.New(t, nodetest.Options{K: 1, N: 2})
	c.StartAll()
	c.DealerCfg.PrimePool = 2
	d := c.Dealer(dealer.Options{})
	deadline := time.Now().Add(30 * time.Second)
	for d.PoolSize(1024) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("pool holds %d primes after 30 s", d.PoolSize(1024))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d.PoolSize(2048) != 0 {
		t.Fatal("pool serves a size it was not asked for")
	}
	signed, acked, _, err := d.GenerateKey(nodetest.Ctx(t, 60*time.Second), 1024, 0, "pooled", nil)
	if err != nil || len(acked) != 2 {
		t.Fatalf("GenerateKey: %v, acked %v", err, acked)
	}
	nodetest.RecordKey(t, c.Manifest, signed)
	// Refilled.
	deadline = time.Now().Add(30 * time.Second)
	for d.PoolSize(1024) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("pool not refilled")
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.Close()
	if d.PoolSize(1024) != 0 {
		t.Fatal("Close left primes in the pool")
	}
}

// Run serves until its ctx ends; a node that never answers is reported missing.
func TestRunAndMissing(t *testing.T) {
	c := nodetest.New(t, nodetest.Options{K: 2, N: 3})
	c.StartNode(1, node.Options{})
	c.StartNode(2, node.Options{})
	cfg := *c.DealerCfg
	cfg.AckTimeout = config.Duration(2 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- dealer.Run(ctx, &cfg, dealer.Options{Logger: c.Logger, NoPool: true}) }()
	client := c.Peer("client-1")
	q := transport.Dealer
	var op *trust.Opened
	var err error
	for range 100 {
		op, err = client.Call(nodetest.Ctx(t, 60*time.Second), "dealer", q, wt, client.Ticketed(loggedIn, time.Now(), &tchsmpb.GenerateKeyRequest{Bits: 1024}, 1, 2))
		if !errors.Is(err, transport.ErrNoRoute) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	resp := op.Message.(*tchsmpb.GenerateKeyResponse)
	if !slices.Equal(resp.Acknowledged, []string{"node-1", "node-2"}) || !slices.Equal(resp.Missing, []string{"node-3"}) {
		t.Fatalf("acked %v missing %v", resp.Acknowledged, resp.Missing)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}

// The requests that change keys need the login tickets of k distinct nodes for their sender
// (trust.CheckTickets); tickets of nodes that hold no PIN for the client count too (a cluster
// not migrated to PINs keeps working).
func TestServiceNeedsTickets(t *testing.T) {
	c := nodetest.New(t, nodetest.Options{K: 2, N: 3, Signers: 1})
	d := c.Dealer(dealer.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- d.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	client, signer := c.Peer("client-1"), c.Peer("signer-1")
	q := transport.Dealer
	for range 50 {
		_, err := client.Call(nodetest.Ctx(t, 10*time.Second), "dealer", q, tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST, &tchsmpb.HealthRequest{})
		if !errors.Is(err, transport.ErrNoRoute) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// RestoreKey of a key nobody holds is answered (nothing restored) once the tickets pass.
	restore := &tchsmpb.RestoreKey{KeyId: strings.Repeat("ab", 16)}
	now := time.Now()
	noVerifier := tchsmpb.TicketStatement_NO_VERIFIER
	mixed := client.Ticketed(loggedIn, now, restore, 1)
	mixed.Tickets = append(mixed.Tickets, client.Ticketed(noVerifier, now, restore, 2).Tickets...) // another key's ticket
	for _, tc := range []struct {
		name string
		bt   tchsmpb.BodyType
		body proto.Message
		want tchsmpb.Error_Code // CODE_UNSPECIFIED: served
	}{
		{"bare RestoreKey", tchsmpb.BodyType_BODY_TYPE_RESTORE_KEY, restore, tchsmpb.Error_NOT_LOGGED_IN},
		{"bare DeleteKey", tchsmpb.BodyType_BODY_TYPE_DELETE_KEY, &tchsmpb.DeleteKey{KeyId: "k1"}, tchsmpb.Error_NOT_LOGGED_IN},
		{"bare GenerateKeyRequest", tchsmpb.BodyType_BODY_TYPE_GENERATE_KEY_REQUEST, &tchsmpb.GenerateKeyRequest{Bits: 1024}, tchsmpb.Error_NOT_LOGGED_IN},
		{"bare DKGLateDeals", tchsmpb.BodyType_BODY_TYPE_DKG_LATE_DEALS, &tchsmpb.DKGLateDeals{Recipient: "node-3"}, tchsmpb.Error_NOT_LOGGED_IN},
		{"no tickets", wt, client.Ticketed(loggedIn, now, restore), tchsmpb.Error_NOT_LOGGED_IN},
		{"k-1 tickets", wt, client.Ticketed(loggedIn, now, restore, 3), tchsmpb.Error_NOT_LOGGED_IN},
		{"one node twice", wt, client.Ticketed(loggedIn, now, restore, 2, 2), tchsmpb.Error_NOT_LOGGED_IN},
		{"expired tickets", wt, client.Ticketed(loggedIn, now.Add(-trust.TicketLifetime-time.Minute), restore, 1, 2), tchsmpb.Error_NOT_LOGGED_IN},
		{"tickets under two keys", wt, mixed, tchsmpb.Error_NOT_LOGGED_IN},
		{"another client's tickets", wt, signer.Ticketed(loggedIn, now, restore, 1, 2), tchsmpb.Error_NOT_LOGGED_IN},
		{"ListKeys with tickets", wt, client.Ticketed(loggedIn, now, &tchsmpb.ListKeys{}, 1, 2), tchsmpb.Error_BAD_REQUEST},
		{"signer with k tickets", wt, nil, tchsmpb.Error_UNAUTHORIZED},
		{"k logged-in tickets", wt, client.Ticketed(loggedIn, now, restore, 1, 3), 0},
		{"n tickets", wt, client.Ticketed(loggedIn, now, restore, 1, 2, 3), 0},
		{"k no-verifier tickets (migration)", wt, client.Ticketed(noVerifier, now, restore, 2, 3), 0},
	} {
		from := client
		if tc.body == nil {
			from, tc.body = signer, signer.Ticketed(loggedIn, now, restore, 1, 2)
		}
		op, err := from.Call(nodetest.Ctx(t, 10*time.Second), "dealer", q, tc.bt, tc.body)
		if got := nodetest.Code(err); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
			continue
		}
		if tc.want == 0 {
			if ack, ok := op.Message.(*tchsmpb.RestoreKeyAck); !ok || ack.KeyId != restore.KeyId || len(ack.Restored) != 0 {
				t.Errorf("%s: answered %v", tc.name, op.Message)
			}
		}
	}
	// A ticketed request lives at most its inner type's limit.
	w := client.Ticketed(loggedIn, now, &tchsmpb.GenerateKeyRequest{Bits: 1024}, 1, 2)
	raw, _, err := client.Sealer.Seal(wt, w, trust.GenerateMaxTTL+time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CallRaw(nodetest.Ctx(t, 10*time.Second), "dealer", q, raw); nodetest.Code(err) != tchsmpb.Error_BAD_REQUEST {
		t.Errorf("a GenerateKeyRequest living %v: %v", trust.GenerateMaxTTL+time.Minute, err)
	}
}
