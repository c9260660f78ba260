package rpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/internal/backend"
	"github.com/tchsm/tchsm/internal/rpc"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	"github.com/tchsm/tchsm/node/nodetest"
	tchsmpb "github.com/tchsm/tchsm/proto"
)

type outcome struct {
	typ    string
	failed bool
}

// rig is a server for node-1 and a caller for client-1 on an in-memory network.
type rig struct {
	c      *nodetest.Cluster
	caller *rpc.Caller
	mu     sync.Mutex
	seen   []outcome
}

func newRig(t *testing.T, replyAs string) *rig { return newRigWith(t, replyAs, nil) }

// newRigWith is newRig with the server's copy of the manifest edited by serverManifest.
func newRigWith(t *testing.T, replyAs string, serverManifest func(*trust.Manifest)) *rig {
	c := nodetest.NewInMemory(t, nodetest.Options{K: 2, N: 3})
	r := &rig{c: c}
	node1 := c.Identity("node-1")
	sm := c.Manifest
	if serverManifest != nil {
		b, err := c.Manifest.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if sm, err = trust.ParseManifest(b); err != nil {
			t.Fatal(err)
		}
		serverManifest(sm)
	}
	opener, err := trust.NewOpener(sm, trust.WithIdentity(node1))
	if err != nil {
		t.Fatal(err)
	}
	srv := &rpc.Server{Opener: opener, Sealer: &trust.Sealer{Identity: c.Identity(replyAs), ClusterID: c.Manifest.ClusterID},
		Log: c.Logger,
		Handle: func(ctx context.Context, op *trust.Opened) (proto.Message, *rpc.Failure) {
			switch m := op.Message.(type) {
			case *tchsmpb.HealthRequest:
				return &tchsmpb.Health{Node: "node-1"}, nil
			case *tchsmpb.DeleteKey, *tchsmpb.RestoreKey, *tchsmpb.GenerateKeyRequest:
				return &tchsmpb.Health{Node: "handled"}, nil
			case *tchsmpb.SignRequest:
				if m.GetKeyId() == "panic" {
					panic("boom")
				}
				return nil, rpc.Fail(tchsmpb.Error_UNKNOWN_KEY, m.GetKeyId(), "no share of %s", m.GetKeyId())
			}
			return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "%v is not served", op.Type)
		},
		Done: func(op *trust.Opened, typ string, f *rpc.Failure) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.seen = append(r.seen, outcome{typ, f != nil})
		},
	}
	st := c.Dial("node-1")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Serve(ctx, transport.Node("node-1"), 2, srv.Serve) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := st.WaitServing(nodetest.Ctx(t, 5*time.Second), transport.Node("node-1")); err != nil {
		t.Fatal(err)
	}
	client1 := c.Identity("client-1")
	copener, err := trust.NewOpener(c.Manifest, trust.WithIdentity(client1))
	if err != nil {
		t.Fatal(err)
	}
	ct := c.Dial("client-1")
	r.caller = &rpc.Caller{Sealer: &trust.Sealer{Identity: client1, ClusterID: c.Manifest.ClusterID}, Opener: copener,
		Transport: func(context.Context) (transport.Transport, error) { return ct, nil }}
	return r
}

func (r *rig) call(t *testing.T, body proto.Message) (*trust.Opened, error) {
	node1, _ := r.c.Manifest.Lookup("node-1")
	return r.caller.Call(nodetest.Ctx(t, 5*time.Second), node1, transport.Node("node-1"), body)
}

func TestCallAndServe(t *testing.T) {
	r := newRig(t, "node-1")
	op, err := r.call(t, &tchsmpb.HealthRequest{})
	if err != nil || op.Message.(*tchsmpb.Health).GetNode() != "node-1" {
		t.Fatalf("health: %v %v", op, err)
	}
	_, err = r.call(t, &tchsmpb.SignRequest{KeyId: "gone"})
	var re *rpc.Error
	if !errors.As(err, &re) || re.Peer != "node-1" || re.Code != tchsmpb.Error_UNKNOWN_KEY || re.KeyID != "gone" ||
		!errors.Is(err, backend.ErrKeyNotFound) || errors.Is(err, backend.ErrInvalidInput) {
		t.Fatalf("failure: %v (%+v)", err, re)
	}
	if _, err := r.call(t, &tchsmpb.ListKeys{}); !errors.Is(err, backend.ErrInvalidInput) {
		t.Fatalf("BAD_REQUEST: %v, want ErrInvalidInput", err)
	}
	_, err = r.call(t, &tchsmpb.SignRequest{KeyId: "panic"})
	if !errors.As(err, &re) || re.Code != tchsmpb.Error_INTERNAL || strings.Contains(err.Error(), "boom") {
		t.Fatalf("panic: %v, want INTERNAL without the panic's text", err)
	}
	// The server survives the panic.
	if _, err := r.call(t, &tchsmpb.HealthRequest{}); err != nil {
		t.Fatal(err)
	}
	// An envelope that does not open gets a plain transport error with its category only.
	tr, _ := r.caller.Transport(context.Background())
	_, err = tr.Call(nodetest.Ctx(t, 5*time.Second), transport.Node("node-1"), []byte("not an envelope"))
	if !errors.Is(err, transport.ErrRemote) || !strings.Contains(err.Error(), rpc.ErrRejected.Error()) {
		t.Fatalf("garbage: %v", err)
	}
	// A replayed request is rejected too.
	node1, _ := r.c.Manifest.Lookup("node-1")
	raw, _, err := r.caller.Sealer.SealTo(node1, tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST, &tchsmpb.HealthRequest{}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Call(nodetest.Ctx(t, 5*time.Second), transport.Node("node-1"), raw); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Call(nodetest.Ctx(t, 5*time.Second), transport.Node("node-1"), raw); !errors.Is(err, transport.ErrRemote) ||
		!strings.Contains(err.Error(), trust.ErrReplay.Error()) {
		t.Fatalf("replay: %v", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	want := []outcome{{"health_request", false}, {"sign_request", true}, {"list_keys", true}, {"sign_request", true},
		{"health_request", false}, {"rejected", false}, {"health_request", false}, {"rejected", false}}
	if len(r.seen) != len(want) {
		t.Fatalf("Done saw %v, want %v", r.seen, want)
	}
	for i := range want {
		if r.seen[i] != want[i] {
			t.Fatalf("Done saw %v, want %v", r.seen, want)
		}
	}
}

func TestAnswerFromAnotherMember(t *testing.T) {
	r := newRig(t, "node-2") // opens as node-1, answers as node-2
	if _, err := r.call(t, &tchsmpb.HealthRequest{}); !errors.Is(err, rpc.ErrWrongAnswer) {
		t.Fatalf("answer sealed by node-2 to a request for node-1: %v, want ErrWrongAnswer", err)
	}
}

func TestCallNeedsDeadline(t *testing.T) {
	r := newRig(t, "node-1")
	node1, _ := r.c.Manifest.Lookup("node-1")
	if _, err := r.caller.Call(context.Background(), node1, transport.Node("node-1"), &tchsmpb.HealthRequest{}); !errors.Is(err, transport.ErrNoDeadline) {
		t.Fatalf("no deadline: %v", err)
	}
}

// A flood of envelopes that do not open is logged at a bounded rate, with a count of what was
// not logged.
func TestRejectionsLoggedAtBoundedRate(t *testing.T) {
	var buf logBuffer
	c := nodetest.NewInMemory(t, nodetest.Options{K: 2, N: 3})
	opener, err := trust.NewOpener(c.Manifest, trust.WithIdentity(c.Identity("node-1")))
	if err != nil {
		t.Fatal(err)
	}
	srv := &rpc.Server{Opener: opener, Sealer: &trust.Sealer{Identity: c.Identity("node-1"), ClusterID: c.Manifest.ClusterID},
		Log:    slog.New(slog.NewJSONHandler(&buf, nil)),
		Handle: func(context.Context, *trust.Opened) (proto.Message, *rpc.Failure) { return &tchsmpb.Health{}, nil }}
	for range 1000 {
		if _, err := srv.Serve(context.Background(), transport.Delivery{Body: []byte("forged")}); !errors.Is(err, rpc.ErrRejected) {
			t.Fatal(err)
		}
	}
	if lines := strings.Count(buf.String(), "\n"); lines > 30 {
		t.Fatalf("%d log lines for 1000 rejected requests in well under a few seconds", lines)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := srv.Serve(context.Background(), transport.Delivery{Body: []byte("forged")}); !errors.Is(err, rpc.ErrRejected) {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var last struct {
		NotLogged int `json:"not_logged_before"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.NotLogged < 1 {
		t.Fatalf("the line after the flood does not count what was not logged (%v):\n%s", err, lines[len(lines)-1])
	}
}

type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A client whose role (in the server's manifest) is signer is answered a sealed UNAUTHORIZED
// for what only admins may send, before the handler sees it; what signers may send is served.
func TestServerRefusesByClientRole(t *testing.T) {
	r := newRigWith(t, "node-1", func(m *trust.Manifest) {
		for i := range m.Clients {
			m.Clients[i].ClientRole = trust.ClientRoleSigner
		}
	})
	if _, err := r.call(t, &tchsmpb.HealthRequest{}); err != nil {
		t.Fatalf("a signer's health request: %v", err)
	}
	for _, body := range []proto.Message{&tchsmpb.DeleteKey{KeyId: "00112233445566778899aabbccddeeff"},
		&tchsmpb.RestoreKey{KeyId: "00112233445566778899aabbccddeeff"}, &tchsmpb.GenerateKeyRequest{Bits: 2048}} {
		op, err := r.call(t, body)
		var re *rpc.Error
		if !errors.As(err, &re) || re.Code != tchsmpb.Error_UNAUTHORIZED || !errors.Is(err, backend.ErrUnauthorized) ||
			!strings.Contains(re.Message, "signer") {
			t.Fatalf("%T from a signer: %v %v, want a sealed UNAUTHORIZED", body, op, err)
		}
	}
	// The same requests from an admin reach the handler.
	r = newRig(t, "node-1")
	if op, err := r.call(t, &tchsmpb.DeleteKey{KeyId: "00112233445566778899aabbccddeeff"}); err != nil || op.Message.(*tchsmpb.Health).GetNode() != "handled" {
		t.Fatalf("an admin's DeleteKey: %v %v", op, err)
	}
}
