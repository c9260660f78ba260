package trust

import (
	"sync"
	"testing"
	"time"
)

// cluster is a test cluster of named actors: alice the client, bob another client, dealer,
// node1..node3 (k=2), and mallory, who has keys but is not in the manifest.
type cluster struct {
	m                    *Manifest
	alice, bob, dealer   *Identity
	nodes                []*Identity
	mallory              *Identity
	malloryDealer        *Identity // a dealer identity not in the manifest
	clock                *fakeClock
	aliceSealer, dealerS *Sealer
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func mustIdentity(t testing.TB, id string, role Role) *Identity {
	t.Helper()
	i, err := NewIdentity(id, role)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func newCluster(t testing.TB) *cluster {
	t.Helper()
	c := &cluster{
		alice:         mustIdentity(t, "alice", RoleClient),
		bob:           mustIdentity(t, "bob", RoleClient),
		dealer:        mustIdentity(t, "dealer", RoleDealer),
		mallory:       mustIdentity(t, "mallory", RoleClient),
		malloryDealer: mustIdentity(t, "dealer2", RoleDealer),
		clock:         &fakeClock{t: time.Unix(1_800_000_000, 0)},
	}
	m := &Manifest{Version: 1, ClusterID: "test-cluster", Threshold: 2}
	for i, name := range []string{"node1", "node2", "node3"} {
		id := mustIdentity(t, name, RoleNode)
		c.nodes = append(c.nodes, id)
		mem := id.Public()
		mem.Index = i + 1
		m.Nodes = append(m.Nodes, mem)
	}
	m.Dealers = []Member{c.dealer.Public()}
	m.Clients = []Member{c.alice.Public(), c.bob.Public()}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	c.m = m
	c.aliceSealer = &Sealer{Identity: c.alice, ClusterID: m.ClusterID, Clock: c.clock.Now}
	c.dealerS = &Sealer{Identity: c.dealer, ClusterID: m.ClusterID, Clock: c.clock.Now}
	return c
}

func (c *cluster) opener(t testing.TB, opts ...OpenerOption) *Opener {
	t.Helper()
	o, err := NewOpener(c.m, append([]OpenerOption{WithClock(c.clock.Now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func (c *cluster) sealer(id *Identity) *Sealer {
	return &Sealer{Identity: id, ClusterID: c.m.ClusterID, Clock: c.clock.Now}
}
