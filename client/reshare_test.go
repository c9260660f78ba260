package client

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/transport/memory"
	"github.com/tchsm/tchsm/node/nodetest"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
)

// TestMemReshare: real nodes (2-of-3) over the in-memory transport. A resharing with a node down stores
// nothing (the next one finds all three nodes holding the same record); resharings then move the
// key to epochs 1 and 2 with the public key unchanged, and it signs after each; a node refuses
// to reshare an older record than its own; an RSA key is refused with the rollover hint.
func TestMemReshare(t *testing.T) {
	mc := startMem(t, 2, 3, nil, nil)
	cl := mc.client(t, nil)
	ctx := nodetest.Ctx(t, 2*time.Minute)
	info, err := cl.GenerateKey(ctx, GenerateRequest{Algorithm: scheme.Ed25519FROST, Label: "re"})
	if err != nil {
		t.Fatal(err)
	}
	mc.key = info

	mc.Net.SetFault(transport.Node("node-3"), memory.Fault{Err: fmt.Errorf("node-3 down")})
	if _, err := cl.ReshareKey(ctx, info.ID); !errors.Is(err, ErrNotEnoughNodes) {
		t.Fatalf("resharing with a node down: %v, want ErrNotEnoughNodes", err)
	}
	mc.Net.SetFault(transport.Node("node-3"), memory.Fault{})

	var records []*tchsmpb.SignedKeyRecord
	for epoch := uint32(1); epoch <= 2; epoch++ {
		cur, holders, _, err := cl.currentRecord(ctx, info.ID)
		if err != nil || len(holders) != 3 {
			t.Fatalf("before epoch %d: %d holders of the latest record (%v)", epoch, len(holders), err)
		}
		records = append(records, cur)
		res, err := cl.ReshareKey(ctx, info.ID)
		if err != nil {
			t.Fatalf("epoch %d: %v\n%s", epoch, err, mc.logs)
		}
		if res.Epoch != epoch || len(res.Stored) != 3 || len(res.Holders) != 3 || len(res.Receivers) != 0 || len(res.Dealers) != 2 {
			t.Fatalf("epoch %d: %+v", epoch, res)
		}
		if !info.Public.(ed25519.PublicKey).Equal(res.Key.Public) {
			t.Fatal("the public key changed")
		}
		// A fresh client finds the new epoch; both sign.
		for i, c := range []*Client{cl, mc.client(t, nil)} {
			if err := mc.signEd(t, c, fmt.Sprintf("epoch %d, client %d", epoch, i)); err != nil {
				t.Fatalf("epoch %d: %v\n%s", epoch, err, mc.logs)
			}
		}
		noLiars(t, cl)
	}

	// An old record: every node holds epoch 2 now.
	run := bytes.Repeat([]byte{1}, 16)
	_, err = mc.Peer("client-1").CallNode(ctx, 1, tchsmpb.BodyType_BODY_TYPE_RESHARE_REQUEST,
		&tchsmpb.ReshareRequest{KeyId: info.ID, Record: records[0], Run: run})
	if nodetest.Code(err) != tchsmpb.Error_OLD_RECORD {
		t.Fatalf("resharing epoch 0 on a node at epoch 2: %v, want OLD_RECORD", err)
	}
	// Bound checks on step 0.
	for name, req := range map[string]*tchsmpb.ReshareRequest{
		"short run id": {KeyId: info.ID, Record: records[1], Run: run[:8]},
		"no record":    {KeyId: info.ID, Run: run},
		"another key":  {KeyId: "00112233445566778899aabbccddeeff", Record: records[1], Run: run},
		"step 9":       {KeyId: info.ID, Step: 9},
		"late step":    {KeyId: info.ID, Step: 2, Messages: []*tchsmpb.DKGMessage{{From: 2, To: 1, Payload: []byte{1}}}},
	} {
		if _, err := mc.Peer("client-1").CallNode(ctx, 1, tchsmpb.BodyType_BODY_TYPE_RESHARE_REQUEST, req); err == nil {
			t.Fatalf("%s: accepted", name)
		} else if c := nodetest.Code(err); c != tchsmpb.Error_BAD_REQUEST && c != tchsmpb.Error_UNKNOWN_KEY {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// A commit without a run.
	if _, err := mc.Peer("client-1").CallNode(ctx, 1, tchsmpb.BodyType_BODY_TYPE_RESHARE_COMMIT,
		&tchsmpb.ReshareCommit{KeyId: info.ID, Record: records[1]}); nodetest.Code(err) != tchsmpb.Error_UNKNOWN_KEY {
		t.Fatalf("a commit without a resharing: %v", err)
	}

	mc.dealRSA(t, "rsa")
	if _, err := cl.ReshareKey(ctx, mc.key.ID); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("resharing an RSA key: %v, want ErrInvalidInput", err)
	}
}

// TestMemReshareCachedClient: a client that cached a key before another client reshared it
// (a long-running signer) judges the shares of a failed signature against the new record, not
// its old one: with a lying node in the set, only the liar is left out, and the client signs
// with the new epoch.
func TestMemReshareCachedClient(t *testing.T) {
	lie := func(r *scheme.Reply) {
		if len(r.Payload) == 32 { // a signature share (commit replies are longer)
			r.Payload = append([]byte(nil), r.Payload...)
			r.Payload[0] ^= 1
		}
	}
	mc := startMem(t, 2, 4, map[int]func(*scheme.Reply){4: lie}, nil)
	admin := mc.generateEd(t)
	ctx := nodetest.Ctx(t, 2*time.Minute)
	signer := mc.client(t, nil)
	if _, err := signer.Keys(ctx); err != nil { // the key cached at epoch 0
		t.Fatal(err)
	}
	if res, err := admin.ReshareKey(ctx, mc.key.ID); err != nil || res.Epoch != 1 {
		t.Fatalf("ReshareKey: %+v, %v\n%s", res, err, mc.logs)
	}
	// With node-1 and node-2 down the set is {3, 4}: the liar spoils the signature.
	for _, down := range []string{"node-1", "node-2"} {
		mc.Net.SetFault(transport.Node(down), memory.Fault{Err: fmt.Errorf("%s down", down)})
	}
	if err := mc.signEd(t, signer, "liar in the set"); err == nil {
		t.Fatal("signed with a liar and one honest node of two")
	}
	for _, down := range []string{"node-1", "node-2"} {
		mc.Net.SetFault(transport.Node(down), memory.Fault{})
	}
	if err := mc.signEd(t, signer, "after the resharing"); err != nil {
		t.Fatalf("%v\n%s", err, mc.logs)
	}
	st := signer.NodeStats()
	if st["node-4"].Invalid == 0 || st["node-3"].Invalid != 0 || st["node-1"].Invalid != 0 || st["node-2"].Invalid != 0 {
		t.Fatalf("liars counted: %+v\n%s", st, mc.logs)
	}
	if !bytes.Contains([]byte(mc.logs.String()), []byte("key reshared since it was cached")) {
		t.Fatal("the client did not take the new record")
	}
}
