package client

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/node"
	"github.com/tchsm/tchsm/node/nodetest"
)

// pinCluster is a 2-of-3 in-memory cluster whose nodes hold the PIN 4711 for client-1 (admin)
// and signer-1, each node locking a client after maxFails wrong PINs.
func pinCluster(t *testing.T, maxFails int) *memCluster {
	t.Helper()
	c := nodetest.NewInMemory(t, nodetest.Options{K: 2, N: 3, Signers: 1, PIN: "4711"})
	mc := &memCluster{Cluster: c, logs: &logBuffer{}}
	for i := 1; i <= 3; i++ {
		c.Nodes[i-1].PINMaxFailures = maxFails
		c.StartNode(i, node.Options{})
	}
	mc.dealRSA(t, "pin")
	return mc
}

// clientAt opens the client of the config file at path over the in-memory network.
func (mc *memCluster) clientAt(t *testing.T, path string) *Client {
	t.Helper()
	var cfg config.Client
	if err := config.Load(path, &cfg); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(mc.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := New(context.Background(), &cfg, Options{Logger: log, Transport: mc.Net.Connect("client")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// A client's files without the PIN sign nothing (listing works); the right PIN signs, also
// after the nodes restarted (the client logs in again by itself); wrong PINs count, lock at
// the nodes' limit, and only an admin client unlocks; a PIN change takes effect on the nodes.
func TestLoginThroughClient(t *testing.T) {
	mc := pinCluster(t, 10)
	admin := mc.clientAt(t, mc.Layout.Clients[0])
	if _, err := admin.Keys(ctx5(t)); err != nil {
		t.Fatalf("listing without a login: %v", err)
	}
	if err := mc.sign(t, admin, "no login"); !errors.Is(err, ErrNotLoggedIn) {
		t.Fatalf("sign without a login: %v, want ErrNotLoggedIn", err)
	}
	if st, err := admin.Login(ctx5(t), []byte("0000")); !errors.Is(err, ErrPINIncorrect) || st.Failures != 1 || st.Remaining != 9 {
		t.Fatalf("wrong PIN: %+v %v", st, err)
	}
	if err := mc.sign(t, admin, "still no login"); !errors.Is(err, ErrNotLoggedIn) {
		t.Fatalf("sign after a wrong PIN: %v", err)
	}
	if st, err := admin.Login(ctx5(t), []byte("4711")); err != nil || st.Failures != 0 {
		t.Fatalf("login: %+v %v", st, err)
	}
	if err := mc.sign(t, admin, "logged in"); err != nil {
		t.Fatal(err)
	}
	// The nodes forget sessions when they restart: the client logs in again by itself.
	for i := 1; i <= 3; i++ {
		mc.StopNode(i)
		mc.StartNode(i, node.Options{})
	}
	if err := mc.sign(t, admin, "after the restarts"); err != nil {
		t.Fatalf("sign after the nodes restarted: %v", err)
	}

	// The signer's files, copied: ten wrong PINs lock it; the right one is then refused.
	signer := mc.clientAt(t, mc.Layout.Signers[0])
	for i := 1; i <= 9; i++ {
		if _, err := signer.Login(ctx5(t), []byte("1111")); !errors.Is(err, ErrPINIncorrect) {
			t.Fatalf("wrong PIN %d: %v", i, err)
		}
	}
	if st := signer.PINStatus(); st.Remaining != 1 || st.Failures != 9 {
		t.Fatalf("status before the last try: %+v", st)
	}
	if st, err := signer.Login(ctx5(t), []byte("1111")); !errors.Is(err, ErrPINLocked) || !st.Locked {
		t.Fatalf("tenth wrong PIN: %+v %v, want ErrPINLocked", st, err)
	}
	if _, err := signer.Login(ctx5(t), []byte("4711")); !errors.Is(err, ErrPINLocked) {
		t.Fatalf("right PIN while locked: %v", err)
	}
	// A signer cannot unlock (not even logged in: it is locked); the admin can.
	if _, err := signer.Unlock(ctx5(t), "signer-1"); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("signer unlocks: %v, want ErrUnauthorized", err)
	}
	if rs, err := admin.Unlock(ctx5(t), "signer-1"); err != nil {
		t.Fatalf("admin unlock: %v %+v", err, rs)
	}
	if _, err := signer.Login(ctx5(t), []byte("4711")); err != nil {
		t.Fatalf("login after the unlock: %v", err)
	}
	if err := mc.sign(t, signer, "signer signs"); err != nil {
		t.Fatal(err)
	}
	// A PIN change: the old PIN no longer logs in, the new one does.
	if _, err := signer.ChangePIN(ctx5(t), []byte("0000"), []byte("2468")); !errors.Is(err, ErrPINIncorrect) {
		t.Fatalf("change with a wrong PIN: %v", err)
	}
	if _, err := signer.ChangePIN(ctx5(t), []byte("4711"), []byte("2468")); err != nil {
		t.Fatal(err)
	}
	if err := mc.sign(t, signer, "after the change"); err != nil {
		t.Fatalf("sign after the change (logged in with the new PIN): %v", err)
	}
	signer.Logout()
	if err := mc.sign(t, signer, "logged out"); !errors.Is(err, ErrNotLoggedIn) {
		t.Fatalf("sign after logout: %v", err)
	}
	if _, err := signer.Login(ctx5(t), []byte("4711")); !errors.Is(err, ErrPINIncorrect) {
		t.Fatalf("old PIN: %v", err)
	}
	if _, err := signer.Login(ctx5(t), []byte("2468")); err != nil {
		t.Fatalf("new PIN: %v", err)
	}
}

// A cluster without PINs on the nodes: signing works without a login, Login says
// ErrNoPINVerifier, and ChangePIN with no old PIN installs one (tchsm pin set).
func TestPINMigrationThroughClient(t *testing.T) {
	mc := newMemCluster(t, 2, 3, nil)
	c := mc.client(t, nil)
	if err := mc.sign(t, c, "legacy"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Login(ctx5(t), []byte("4711")); !errors.Is(err, ErrNoPINVerifier) {
		t.Fatalf("login: %v, want ErrNoPINVerifier", err)
	}
	if _, err := c.ChangePIN(ctx5(t), nil, []byte("4711")); err != nil {
		t.Fatal(err)
	}
	if err := mc.sign(t, c, "migrated, logged in by the change"); err != nil {
		t.Fatal(err)
	}
	other := mc.client(t, nil)
	if err := mc.sign(t, other, "another process, no login"); !errors.Is(err, ErrNotLoggedIn) {
		t.Fatalf("another process without a login: %v", err)
	}
}
