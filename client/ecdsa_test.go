package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/backend"
	"github.com/tchsm/tchsm/node/nodetest"
	"github.com/tchsm/tchsm/scheme"
)

// The client does not drive ECDSA P-256 (scheme.ECDSAP256HM) keys yet: it does not list the
// algorithm to the PKCS#11 token (which then offers no EC mechanism) and refuses to generate
// such a key with scheme.ErrNotSupported.
func TestECDSANotWiredYet(t *testing.T) {
	c := nodetest.NewInMemory(t, nodetest.Options{K: 2, N: 3})
	c.StartAll()
	mc := &memCluster{Cluster: c, logs: &logBuffer{}}
	cl := mc.client(t, nil)
	if backend.Supports(cl, scheme.ECDSAP256HM) || !backend.Supports(cl, scheme.ShoupRSA) || !backend.Supports(cl, scheme.Ed25519FROST) {
		t.Fatal("the client claims the wrong algorithms")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cl.GenerateKey(ctx, GenerateRequest{Algorithm: scheme.ECDSAP256HM, Bits: 256}); !errors.Is(err, scheme.ErrNotSupported) {
		t.Fatalf("GenerateKey(ECDSAP256HM): %v", err)
	}
}
