package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/internal/clusterinit"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme/shoup"
	"github.com/tchsm/tchsm/scheme/shoup/keygen"
)

// fuzzNode is a node without a broker: the handlers are called directly.
type fuzzNode struct {
	n       *node
	keyID   string
	members map[byte]*trust.Identity
	opener  *trust.Opener
}

func newFuzzNode(tb testing.TB) *fuzzNode {
	tb.Helper()
	dir := tb.TempDir()
	l, err := clusterinit.Create(dir, clusterinit.Options{K: 2, N: 3})
	if err != nil {
		tb.Fatal(err)
	}
	var cfg config.Node
	if err := config.Load(l.Nodes[0], &cfg); err != nil {
		tb.Fatal(err)
	}
	n := &node{cfg: &cfg, log: slog.New(slog.DiscardHandler), started: time.Now(), exps: make(chan struct{}, 2)}
	if err := n.load(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { n.store.Close() })
	n.metrics = newMetrics(nil)

	read := func(path string, pass []byte) *trust.Identity {
		id, err := trust.ReadIdentityFile(path, pass)
		if err != nil {
			tb.Fatal(err)
		}
		return id
	}
	var dc config.Dealer
	if err := config.Load(l.Dealer, &dc); err != nil {
		tb.Fatal(err)
	}
	var cc config.Client
	if err := config.Load(l.Clients[0], &cc); err != nil {
		tb.Fatal(err)
	}
	var nc2 config.Node
	if err := config.Load(l.Nodes[1], &nc2); err != nil {
		tb.Fatal(err)
	}
	pass2, _ := nc2.Passphrase()
	f := &fuzzNode{n: n, members: map[byte]*trust.Identity{
		0: read(cc.Identity, nil), 1: read(dc.Identity, nil), 2: read(nc2.Identity, pass2),
	}}
	f.opener, _ = trust.NewOpener(n.manifest())

	// One stored key, dealt by hand.
	key, err := keygen.GenerateKey(context.Background(), rand.Reader, 1024, 0, nil)
	if err != nil {
		tb.Fatal(err)
	}
	pk, shares, err := shoup.Deal(rand.Reader, key, 2, 3)
	if err != nil {
		tb.Fatal(err)
	}
	idb := make([]byte, 16)
	rand.Read(idb)
	rec := &tchsmpb.KeyRecord{KeyId: hex.EncodeToString(idb), Bits: 1024, Modulus: pk.N.Bytes(), PublicExponent: uint32(pk.E),
		K: 2, N: 3, V: pk.V.Bytes(), CreatedUnix: time.Now().Unix(), SafePrimes: true, ClusterId: n.manifest().ClusterID}
	for _, v := range pk.VK {
		rec.Vk = append(rec.Vk, v.Bytes())
	}
	signed, err := trust.SignKeyRecord(f.members[1], rec)
	if err != nil {
		tb.Fatal(err)
	}
	if err := n.store.Put(signed, rec, shoup.WrapShare(shares[0])); err != nil {
		tb.Fatal(err)
	}
	f.keyID = rec.KeyId
	return f
}

// envelope signs an arbitrary body (bytes, not a message) as member who, as trust would.
func (f *fuzzNode) envelope(who byte, bt tchsmpb.BodyType, body []byte) []byte {
	id := f.members[who%3]
	env := &tchsmpb.Envelope{Version: trust.EnvelopeVersion, ClusterId: f.n.manifest().ClusterID, Sender: id.ID,
		MessageId: make([]byte, trust.MessageIDSize), IssuedAt: time.Now().UnixNano(),
		Deadline: time.Now().Add(time.Minute).UnixNano(), BodyType: bt, Body: body}
	rand.Read(env.MessageId)
	env.Signature = ed25519.Sign(id.SignKey, trust.EnvelopeSigningInput(env))
	raw, _ := proto.Marshal(env)
	return raw
}

func marshal(m proto.Message) []byte {
	b, _ := proto.Marshal(m)
	return b
}

// FuzzHandlers feeds authentic envelopes with arbitrary bodies of every type, from every role,
// to both handlers: no panic (the handlers' last-resort recovers would turn one into an INTERNAL
// error, alone or in a batch's answer, which the fuzz target refuses), and every rpc answer is a
// sealed reply.
func FuzzHandlers(f *testing.F) {
	fn := newFuzzNode(f)
	for bt := range int32(len(tchsmpb.BodyType_name) + 1) {
		for who := range byte(3) {
			f.Add(who, bt, []byte{})
		}
	}
	f.Add(byte(0), int32(5), marshal(&tchsmpb.SignRequest{KeyId: fn.keyID, Payload: []byte("x"), WantProof: true}))
	f.Add(byte(0), int32(5), marshal(&tchsmpb.SignRequest{KeyId: fn.keyID, Payload: make([]byte, 117)}))
	f.Add(byte(0), int32(tchsmpb.BodyType_BODY_TYPE_SIGN_BATCH), marshal(&tchsmpb.SignBatch{Requests: []*tchsmpb.SignRequest{
		{KeyId: fn.keyID, Payload: []byte("x")}, {KeyId: "nope", Payload: []byte("y")}, {KeyId: fn.keyID, Payload: make([]byte, 200), WantProof: true}}}))
	f.Add(byte(0), int32(7), marshal(&tchsmpb.ProofRequest{KeyId: fn.keyID, Payload: nil, Indices: []uint32{0, 1, 99}}))
	f.Add(byte(1), int32(1), marshal(&tchsmpb.KeyShareDelivery{Recipient: "node-1", Enc: []byte{1}, Ciphertext: []byte{2},
		SignedRecord: &tchsmpb.SignedKeyRecord{Record: []byte{1, 2, 3}, Dealer: "dealer", Signature: make([]byte, 64)}}))
	f.Add(byte(0), int32(3), marshal(&tchsmpb.DeleteKey{KeyId: strings.Repeat("0", 32)}))
	f.Add(byte(0), int32(tchsmpb.BodyType_BODY_TYPE_RESHARE_REQUEST), marshal(&tchsmpb.ReshareRequest{KeyId: fn.keyID, Run: make([]byte, 16),
		Record: &tchsmpb.SignedKeyRecord{Record: []byte{1, 2, 3}, Endorsements: []*tchsmpb.KeyEndorsement{{Node: "node-2", Signature: make([]byte, 64)}}}}))
	f.Add(byte(0), int32(tchsmpb.BodyType_BODY_TYPE_RESHARE_REQUEST), marshal(&tchsmpb.ReshareRequest{KeyId: fn.keyID, Step: 1,
		Messages: []*tchsmpb.DKGMessage{{From: 2, To: 1, Payload: []byte{1, 2}}, {From: 99, To: 0}}}))
	f.Add(byte(0), int32(tchsmpb.BodyType_BODY_TYPE_RESHARE_COMMIT), marshal(&tchsmpb.ReshareCommit{KeyId: fn.keyID,
		Record: &tchsmpb.SignedKeyRecord{Record: []byte{1}}}))
	f.Fuzz(func(t *testing.T, who byte, bt int32, body []byte) {
		raw := fn.envelope(who, tchsmpb.BodyType(bt), body)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rep, err := fn.n.handleRPC(ctx, transport.Delivery{Body: raw, Deadline: time.Now().Add(10 * time.Second)})
		if err == nil {
			op, oerr := fn.opener.Open(rep)
			if oerr != nil {
				t.Fatalf("reply does not open: %v", oerr)
			}
			if e, ok := op.Message.(*tchsmpb.Error); ok && e.Code == tchsmpb.Error_INTERNAL {
				t.Fatalf("internal error for type %d: %s", bt, e.Message)
			}
			if b, ok := op.Message.(*tchsmpb.SignBatchResult); ok {
				for _, item := range b.Results {
					if item.GetError().GetCode() == tchsmpb.Error_INTERNAL {
						t.Fatalf("internal error in a batch: %s", item.GetError().GetMessage())
					}
				}
			}
		}
		if cerr := fn.n.handleControl(ctx, raw); cerr != nil && strings.Contains(cerr.Error(), "internal error") {
			t.Fatalf("control handler: %v", cerr)
		}
		// The stored key survives anything but a DeleteKey naming it.
		if _, err := fn.n.store.Get(fn.keyID); err != nil && tchsmpb.BodyType(bt) != tchsmpb.BodyType_BODY_TYPE_DELETE_KEY {
			t.Fatalf("stored key lost: %v", err)
		}
	})
}
