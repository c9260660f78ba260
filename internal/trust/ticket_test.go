package trust

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	tchsmpb "github.com/tchsm/tchsm/proto"
)

// A ticket verifies for its client, in its cluster, by a node of the manifest, within its
// lifetime; anything else is refused.
func TestTicketSignVerify(t *testing.T) {
	c := newCluster(t)
	pub := seedTicketKey.Public().(ed25519.PublicKey)
	now := c.clock.Now()
	issue := func(node *Identity, cluster, client string, kind tchsmpb.TicketStatement_Kind, at time.Time) *tchsmpb.LoginTicket {
		t.Helper()
		tk, err := IssueTicket(node, cluster, client, kind, pub, at)
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	good := issue(c.nodes[0], c.m.ClusterID, "alice", tchsmpb.TicketStatement_LOGGED_IN, now)
	st, err := VerifyTicket(c.m, "alice", good, now.Add(TicketLifetime-time.Second))
	if err != nil || st.GetNode() != "node1" || st.GetKind() != tchsmpb.TicketStatement_LOGGED_IN || !bytes.Equal(st.GetTicketKey(), pub) {
		t.Fatalf("good ticket: %v %v", st, err)
	}
	if _, err := VerifyTicket(c.m, "alice", issue(c.nodes[2], c.m.ClusterID, "alice", tchsmpb.TicketStatement_NO_VERIFIER, now), now); err != nil {
		t.Fatalf("no-verifier ticket: %v", err)
	}
	tampered := proto.Clone(good).(*tchsmpb.LoginTicket)
	st.Client = "bob"
	tampered.Statement, _ = proto.Marshal(st) // node1's signature over alice's statement
	otherNode := proto.Clone(good).(*tchsmpb.LoginTicket)
	st.Client, st.Node = "alice", "node2" // claims node2, signed by node1
	otherNode.Statement, _ = proto.Marshal(st)
	flipped := proto.Clone(good).(*tchsmpb.LoginTicket)
	flipped.Signature[0] ^= 1
	for name, tc := range map[string]struct {
		tk     *tchsmpb.LoginTicket
		client string
		at     time.Time
	}{
		"other client":       {good, "bob", now},
		"expired":            {good, "alice", now.Add(TicketLifetime + DefaultSkew + time.Second)},
		"not yet valid":      {good, "alice", now.Add(-DefaultSkew - time.Second)},
		"other cluster":      {issue(c.nodes[0], "other-cluster", "alice", tchsmpb.TicketStatement_LOGGED_IN, now), "alice", now},
		"nil":                {nil, "alice", now},
		"tampered statement": {tampered, "bob", now},
		"another node's":     {otherNode, "alice", now},
		"bad signature":      {flipped, "alice", now},
		"empty":              {&tchsmpb.LoginTicket{}, "alice", now},
		"unknown kind":       {issue(c.nodes[0], c.m.ClusterID, "alice", 7, now), "alice", now},
	} {
		if _, err := VerifyTicket(c.m, tc.client, tc.tk, tc.at); !errors.Is(err, ErrBadTicket) {
			t.Errorf("%s: %v, want ErrBadTicket", name, err)
		}
	}
	// Only nodes issue tickets.
	if _, err := IssueTicket(c.dealer, c.m.ClusterID, "alice", tchsmpb.TicketStatement_LOGGED_IN, pub, now); err == nil {
		t.Error("a dealer issued a ticket")
	}
	// A node not in the manifest signs nothing that counts.
	rogue := mustIdentity(t, "node1", RoleNode)
	if _, err := VerifyTicket(c.m, "alice", issue(rogue, c.m.ClusterID, "alice", tchsmpb.TicketStatement_LOGGED_IN, now), now); !errors.Is(err, ErrBadTicket) {
		t.Errorf("ticket by a node key not in the manifest: %v", err)
	}
}

// CheckTickets wants k valid tickets of distinct nodes naming the key that signed the request.
func TestCheckTickets(t *testing.T) {
	c := newCluster(t)
	now := c.clock.Now()
	pub := seedTicketKey.Public().(ed25519.PublicKey)
	tk := func(i int, key []byte) *tchsmpb.LoginTicket {
		x, err := IssueTicket(c.nodes[i], c.m.ClusterID, "alice", tchsmpb.TicketStatement_LOGGED_IN, key, now)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	_, otherKey, _ := ed25519.GenerateKey(nil)
	otherPub := otherKey.Public().(ed25519.PublicKey)
	body, _ := proto.Marshal(&tchsmpb.DeleteKey{KeyId: "k1"})
	mk := func(key ed25519.PrivateKey, ts ...*tchsmpb.LoginTicket) *tchsmpb.WithTickets {
		w := &tchsmpb.WithTickets{Tickets: ts, Type: tchsmpb.BodyType_BODY_TYPE_DELETE_KEY, Body: body}
		SignTicketed(key, c.m.ClusterID, "alice", w)
		return w
	}
	if nodes, err := CheckTickets(c.m, "alice", mk(seedTicketKey, tk(0, pub), tk(2, pub)), now); err != nil || len(nodes) != 2 {
		t.Fatalf("k tickets: %v %v", nodes, err)
	}
	if _, err := CheckTickets(c.m, "alice", seedWithTickets(t, c), now); err != nil {
		t.Fatalf("logged in and no-verifier tickets: %v", err)
	}
	// A ticket too many that does not count is ignored.
	if _, err := CheckTickets(c.m, "alice", mk(seedTicketKey, tk(0, pub), tk(1, otherPub), tk(2, pub)), now); err != nil {
		t.Fatalf("k good tickets and a bad one: %v", err)
	}
	changed := mk(seedTicketKey, tk(0, pub), tk(1, pub))
	changed.Body, _ = proto.Marshal(&tchsmpb.DeleteKey{KeyId: "k2"})
	for name, tc := range map[string]struct {
		w    *tchsmpb.WithTickets
		want error
	}{
		"none":              {mk(seedTicketKey), ErrNotEnoughTickets},
		"k-1":               {mk(seedTicketKey, tk(0, pub)), ErrNotEnoughTickets},
		"one node twice":    {mk(seedTicketKey, tk(0, pub), tk(0, pub)), ErrNotEnoughTickets},
		"another key's":     {mk(seedTicketKey, tk(0, pub), tk(1, otherPub)), ErrNotEnoughTickets},
		"signed by a thief": {mk(otherKey, tk(0, pub), tk(1, pub)), ErrNotEnoughTickets},
		"body changed":      {changed, ErrBadTicketedSignature},
		"unsigned":          {&tchsmpb.WithTickets{Tickets: []*tchsmpb.LoginTicket{tk(0, pub), tk(1, pub)}, Type: tchsmpb.BodyType_BODY_TYPE_DELETE_KEY, Body: body}, ErrBadTicketedSignature},
	} {
		if _, err := CheckTickets(c.m, "alice", tc.w, now); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	// Bob cannot use alice's tickets, even signed with her ticket key.
	if _, err := CheckTickets(c.m, "bob", mk(seedTicketKey, tk(0, pub), tk(1, pub)), now); err == nil {
		t.Error("bob used alice's tickets")
	}
	// Expired tickets do not count.
	if _, err := CheckTickets(c.m, "alice", mk(seedTicketKey, tk(0, pub), tk(1, pub)), now.Add(TicketLifetime+time.Minute)); !errors.Is(err, ErrNotEnoughTickets) {
		t.Errorf("expired: %v", err)
	}
}

// BenchmarkCheckTickets_2of3 is the dealer's cost per request that changes keys.
func BenchmarkCheckTickets_2of3(b *testing.B) {
	c := newCluster(b)
	w := seedWithTickets(b, c)
	for b.Loop() {
		if _, err := CheckTickets(c.m, "alice", w, c.clock.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
