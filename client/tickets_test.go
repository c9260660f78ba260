package client

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/node"
	"github.com/tchsm/tchsm/node/nodetest"
	"github.com/tchsm/tchsm/scheme"
)

// expireTickets makes the kept tickets look old, so that the next request renews them.
func expireTickets(c *Client) {
	c.login.mu.Lock()
	defer c.login.mu.Unlock()
	for n, h := range c.login.tickets {
		h.expires = time.Now().Add(ticketMargin / 2)
		c.login.tickets[n] = h
	}
}

// heldTickets returns a copy of the tickets c keeps.
func heldTickets(c *Client) map[string]heldTicket {
	c.login.mu.Lock()
	defer c.login.mu.Unlock()
	out := map[string]heldTicket{}
	for n, h := range c.login.tickets {
		out[n] = h
	}
	return out
}

// A client's files without the PIN can neither delete, restore nor generate keys through the
// dealer: the request fails with ErrNotLoggedIn before it reaches the dealer. Logged in, they
// can, and the late deals of an Ed25519 generation reach the dealer; the tickets are renewed
// within the login session (the PIN is not sent again), and after the nodes restarted (logging
// in again with the PIN kept in memory); a logout ends it.
func TestDealerNeedsLogin(t *testing.T) {
	mc := pinCluster(t, 10)
	serveDealer(t, mc.Cluster)
	admin := mc.clientAt(t, mc.Layout.Clients[0])
	id := mc.key.ID
	// Refused by the nodes' answers to the ticket requests, not by the dealer.
	if _, err := admin.DeleteKey(ctx5(t), id); !errors.Is(err, ErrNotLoggedIn) || !strings.Contains(err.Error(), "0 gave one") {
		t.Fatalf("delete without a login: %v, want ErrNotLoggedIn", err)
	}
	if _, _, err := admin.RestoreKey(ctx5(t), id); !errors.Is(err, ErrNotLoggedIn) {
		t.Fatalf("restore without a login: %v, want ErrNotLoggedIn", err)
	}
	if _, err := admin.GenerateKey(ctx5(t), GenerateRequest{Bits: 1024}); !errors.Is(err, ErrNotLoggedIn) {
		t.Fatalf("generate without a login: %v, want ErrNotLoggedIn", err)
	}
	if err := mc.sign(t, admin, "still there"); !errors.Is(err, ErrNotLoggedIn) {
		t.Fatalf("sign without a login: %v", err) // and the key was not deleted: see below
	}
	if _, err := admin.Login(ctx5(t), []byte("4711")); err != nil {
		t.Fatal(err)
	}
	if err := mc.sign(t, admin, "not deleted"); err != nil {
		t.Fatalf("the key after the refused deletion: %v", err)
	}
	if got := len(heldTickets(admin)); got != 3 {
		t.Fatalf("%d tickets kept after the login, want 3", got)
	}
	k, err := admin.GenerateKey(ctx5(t), GenerateRequest{Bits: 1024, Label: "logged-in"})
	if err != nil {
		t.Fatalf("generate logged in: %v", err)
	}
	// Renewed within the session: without the PIN in memory, a renewal by a login would fail.
	admin.login.mu.Lock()
	pin := admin.login.pin
	admin.login.pin = nil
	admin.login.mu.Unlock()
	expireTickets(admin)
	if _, err := admin.DeleteKey(ctx5(t), k.ID); err != nil {
		t.Fatalf("delete with tickets renewed in the session: %v", err)
	}
	renewed := 0
	for _, h := range heldTickets(admin) {
		if h.expires.After(time.Now().Add(ticketMargin)) {
			renewed++
		}
	}
	if renewed < mc.Manifest.Threshold {
		t.Fatalf("%d tickets renewed, want at least k", renewed)
	}
	if _, _, err := admin.RestoreKey(ctx5(t), k.ID); err != nil {
		t.Fatalf("restore: %v", err)
	}
	// The nodes forget their sessions in a restart: the client logs in again with the PIN.
	admin.login.mu.Lock()
	admin.login.pin = pin
	admin.login.mu.Unlock()
	for i := 1; i <= 3; i++ {
		mc.StopNode(i)
		mc.StartNode(i, node.Options{})
	}
	expireTickets(admin)
	if _, err := admin.DeleteKey(ctx5(t), k.ID); err != nil {
		t.Fatalf("delete after the nodes restarted: %v", err)
	}
	// The late deals of an Ed25519 key made without node-3 reach the dealer with the tickets of
	// the two nodes up.
	mc.StopNode(3)
	expireTickets(admin)
	if _, err := admin.GenerateKey(nodetest.Ctx(t, time.Minute), GenerateRequest{Algorithm: scheme.Ed25519FROST, Label: "late", Nodes: 2}); err != nil {
		t.Fatalf("Ed25519 key without node-3: %v", err)
	}
	if got := mc.Net.Inbox(transport.Node("node-3")); got != 1 {
		t.Fatalf("node-3's control queue holds %d messages, want 1 (the late deals)", got)
	}
	admin.Logout()
	if _, _, err := admin.RestoreKey(ctx5(t), k.ID); !errors.Is(err, ErrNotLoggedIn) {
		t.Fatalf("restore after the logout: %v, want ErrNotLoggedIn", err)
	}
	// A logged-in signer still may not: its role, checked before anything is sent.
	signer := mc.clientAt(t, mc.Layout.Signers[0])
	if _, err := signer.Login(ctx5(t), []byte("4711")); err != nil {
		t.Fatal(err)
	}
	if _, err := signer.DeleteKey(ctx5(t), id); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("signer deletes: %v, want ErrUnauthorized", err)
	}
}

// A cluster whose nodes hold no PIN for the client is served by the dealer as before (the
// nodes' NO_VERIFIER tickets), until the PIN is set: from then on a login is needed.
func TestDealerPINMigration(t *testing.T) {
	mc := newMemCluster(t, 2, 3, nil)
	serveDealer(t, mc.Cluster)
	c := mc.client(t, nil)
	if _, _, err := c.RestoreKey(ctx5(t), mc.key.ID); err != nil && !errors.Is(err, ErrNotEnoughNodes) {
		t.Fatalf("restore without PINs: %v", err)
	}
	k, err := c.GenerateKey(ctx5(t), GenerateRequest{Bits: 1024, Label: "legacy"})
	if err != nil {
		t.Fatalf("generate without PINs: %v", err)
	}
	if _, err := c.ChangePIN(ctx5(t), nil, []byte("4711")); err != nil {
		t.Fatal(err)
	}
	other := mc.client(t, nil)
	if _, err := other.DeleteKey(ctx5(t), k.ID); !errors.Is(err, ErrNotLoggedIn) {
		t.Fatalf("another process without a login after the PIN was set: %v, want ErrNotLoggedIn", err)
	}
	if _, err := c.DeleteKey(ctx5(t), k.ID); err != nil {
		t.Fatalf("the process that set the PIN (logged in by it): %v", err)
	}
}
