package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/dnspolicy"
	"github.com/tchsm/tchsm/internal/protocol"
	"github.com/tchsm/tchsm/internal/rpc"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	"github.com/tchsm/tchsm/node/store"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
)

// ErrRejected is the error (sent back as a plain transport error) for requests that do not open.
var ErrRejected = rpc.ErrRejected

// handleRPC serves one request of the rpc queue.
func (n *node) handleRPC(ctx context.Context, d transport.Delivery) ([]byte, error) {
	n.metrics.inFlight.Inc()
	n.inFlight.Add(1)
	defer func() {
		n.inFlight.Add(-1)
		n.metrics.inFlight.Dec()
	}()
	return n.rpc.Serve(ctx, d)
}

// requestDone counts every request and logs the failed ones (rpc.Server.Done).
func (n *node) requestDone(op *trust.Opened, typ string, f *rpc.Failure) {
	switch {
	case op == nil:
		n.metrics.requests.WithLabelValues("rejected", "rejected").Inc()
	case f == nil:
		n.metrics.requests.WithLabelValues(typ, "ok").Inc()
	default:
		n.countFailure(op, typ, f)
	}
}

// countFailure counts and logs a request that was answered with an Error.
func (n *node) countFailure(op *trust.Opened, typ string, f *rpc.Failure) {
	result := strings.ToLower(f.Code.String())
	n.metrics.requests.WithLabelValues(typ, result).Inc()
	if f.KeyID != "" {
		n.metrics.keyErrors.WithLabelValues(n.keyLabel(f.KeyID), result).Inc()
	}
	lvl := n.log.Debug
	if f.Code == tchsmpb.Error_INTERNAL {
		lvl = n.log.Error
	}
	lvl("request failed", "sender", op.Sender.ID, "type", typ, "code", f.Code.String(), "key", f.KeyID, "reason", f.Msg)
}

// internalError logs and counts a panic recovered while serving one request of a batch (the
// rpc.Server does the same for whole requests) and returns the INTERNAL failure that answers it.
func (n *node) internalError(op *trust.Opened, typ string, r any) *rpc.Failure {
	n.log.Error("panic while serving a request", "sender", op.Sender.ID, "type", typ,
		"panic_type", fmt.Sprintf("%T", r), "stack", string(debug.Stack()))
	f := rpc.Fail(tchsmpb.Error_INTERNAL, "", "internal error")
	n.countFailure(op, typ, f)
	return f
}

// keyLabel keeps the metrics' key label bounded: only keys the node holds get their own label.
func (n *node) keyLabel(id string) string {
	if _, err := n.store.Get(id); err == nil {
		return id
	}
	return "unknown"
}

// features are the optional protocol features the node serves and advertises in Health.
func (n *node) features() []string {
	var out []string
	for _, f := range protocol.NodeFeatures {
		if !slices.Contains(n.opts.WithoutFeatures, f) {
			out = append(out, f)
		}
	}
	return out
}

func (n *node) dispatch(ctx context.Context, op *trust.Opened) (proto.Message, *rpc.Failure) {
	switch m := op.Message.(type) {
	case *tchsmpb.SignRequest:
		return n.sign(ctx, op, m)
	case *tchsmpb.SignBatch:
		if slices.Contains(n.opts.WithoutFeatures, protocol.SignBatch) {
			return nil, rpc.Unsupported(op.Type)
		}
		return n.signBatch(ctx, op, m)
	case *tchsmpb.ProofRequest:
		return n.prove(ctx, op, m)
	case *tchsmpb.DKGRequest:
		return n.dkgStep(op, m)
	case *tchsmpb.DKGCommit:
		return n.dkgCommit(op, m)
	case *tchsmpb.ReshareRequest:
		return n.reshareStep(op, m)
	case *tchsmpb.ReshareCommit:
		return n.reshareCommit(op, m)
	case *tchsmpb.PINLogin:
		return n.pinLogin(op, m)
	case *tchsmpb.PINChange:
		return n.pinChange(op, m)
	case *tchsmpb.PINUnlock:
		return n.pinUnlock(op, m)
	case *tchsmpb.ManifestPush:
		return n.applyPush(op.Sender.ID, m)
	case *tchsmpb.ManifestFetch:
		return rpc.ManifestChain(n.id.ID, n.trusted, m)
	case *tchsmpb.ListKeys:
		kl := &tchsmpb.KeyList{Node: n.id.ID}
		for _, k := range n.store.List() {
			kl.Keys = append(kl.Keys, k.Signed)
		}
		return kl, nil
	case *tchsmpb.HealthRequest:
		cur := n.manifest()
		h := &tchsmpb.Health{Node: n.id.ID, Version: n.opts.Version, UptimeNanos: int64(time.Since(n.started)),
			InFlight: uint32(max(n.inFlight.Load()-1, 0)), ManifestSerial: cur.Serial, ManifestHash: cur.Hash()}
		protocol.Advertise(h, n.features())
		for _, k := range n.store.List() {
			h.KeyIds = append(h.KeyIds, k.ID)
			if mode, name := n.policy.ModeOf(k.Record); mode != dnspolicy.ModeNone {
				h.Policies = append(h.Policies, &tchsmpb.KeyPolicyMode{KeyId: k.ID, Mode: string(mode), Policy: name})
			}
		}
		return h, nil
	case *tchsmpb.DeleteKey:
		id := m.GetKeyId()
		if op.Sender.Role != trust.RoleDealer {
			return nil, rpc.Fail(tchsmpb.Error_UNAUTHORIZED, id, "only the dealer deletes keys; ask the dealer")
		}
		if !trust.ValidKeyID(id) {
			return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "bad key id")
		}
		until, err := n.deleteKey(op, id)
		if err != nil {
			return nil, rpc.Fail(tchsmpb.Error_INTERNAL, id, "store failure")
		}
		ack := &tchsmpb.DeleteKeyAck{KeyId: id, Node: n.id.ID, Ok: true}
		if !until.IsZero() {
			ack.RecoverableUntil = until.Unix()
		}
		return ack, nil
	default:
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "%v is not served on the rpc queue", op.Type)
	}
}

// key returns a stored key for a request.
func (n *node) key(id string) (*store.Key, *rpc.Failure) {
	if !trust.ValidKeyID(id) {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "bad key id")
	}
	k, err := n.store.Get(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, rpc.Fail(tchsmpb.Error_UNKNOWN_KEY, id, "no share of this key on %s", n.id.ID)
	}
	if err != nil {
		return nil, rpc.Fail(tchsmpb.Error_UNAVAILABLE, id, "store unavailable")
	}
	return k, nil
}

// respond answers one round of a signing session with the stored key's participant (the node
// builds everything it signs from the key's own record), once the node has fewer than its
// worker count running.
func (n *node) respond(k *store.Key, req scheme.Request) (scheme.Reply, *rpc.Failure) {
	rep, err := n.runRespond(k, req)
	switch {
	case errors.Is(err, scheme.ErrStale):
		return scheme.Reply{}, rpc.Fail(tchsmpb.Error_STALE, k.ID, "%v", err)
	case errors.Is(err, scheme.ErrInvalidRequest):
		return scheme.Reply{}, rpc.Fail(tchsmpb.Error_BAD_REQUEST, k.ID, "%v", err)
	case err != nil && req.Audit:
		return scheme.Reply{}, rpc.Fail(tchsmpb.Error_INTERNAL, k.ID, "proof failed")
	case err != nil:
		return scheme.Reply{}, rpc.Fail(tchsmpb.Error_INTERNAL, k.ID, "signing failed")
	}
	if n.opts.ShareHook != nil {
		n.opts.ShareHook(&rep)
	}
	return rep, nil
}

func (n *node) runRespond(k *store.Key, req scheme.Request) (scheme.Reply, error) {
	n.exps <- struct{}{}
	defer func() { <-n.exps }() // also when it panics: the request's recover answers INTERNAL
	return k.Participant.Respond(context.Background(), rand.Reader, req)
}

// shareProof is the wire form of an audit's proof: RSA's two parts (c, z).
func shareProof(rep scheme.Reply) *tchsmpb.ShareProof {
	if len(rep.Proof) != 2 {
		return nil
	}
	return &tchsmpb.ShareProof{C: rep.Proof[0], Z: rep.Proof[1]}
}

func (n *node) sign(ctx context.Context, op *trust.Opened, req *tchsmpb.SignRequest) (proto.Message, *rpc.Failure) {
	k, rerr := n.key(req.GetKeyId())
	if rerr != nil {
		return nil, rerr
	}
	t0 := time.Now()
	in, rerr := input(k, req)
	if rerr != nil {
		return nil, rerr
	}
	v := dnspolicy.Verdict{Mode: dnspolicy.ModeNone}
	if !in.commit {
		if v, rerr = n.checkPolicy(op, k, in); rerr != nil {
			return nil, rerr
		}
	}
	// want_proof asks for the share and its proof at once: the audit of the same round.
	rep, rerr := n.respond(k, scheme.Request{Round: 1, Audit: req.GetWantProof(), Payload: in.payload, Requester: op.Sender.ID})
	if rerr != nil {
		return nil, rerr
	}
	if v.Mode != dnspolicy.ModeNone {
		n.signed.add(k.ID, in.payload)
	}
	if !in.commit {
		n.audit(op, k, in, v)
	}
	out := &tchsmpb.SignatureShare{KeyId: k.ID, Index: uint32(k.Share.Index()), X: rep.Payload}
	if req.GetWantProof() {
		out.Proof = shareProof(rep)
	}
	n.metrics.signSeconds.Observe(time.Since(t0).Seconds())
	if ctx.Err() != nil {
		return nil, rpc.Fail(tchsmpb.Error_EXPIRED, k.ID, "deadline passed while signing")
	}
	return out, nil
}

// MaxBatch is the largest SignBatch a node serves.
const MaxBatch = config.MaxBatch

// signBatch serves the requests of a batch in parallel (the exps semaphore bounds the node's
// exponentiations) and answers each with a share or an Error, in order. Each request counts in
// the metrics as a sign_request of its own.
func (n *node) signBatch(ctx context.Context, op *trust.Opened, b *tchsmpb.SignBatch) (proto.Message, *rpc.Failure) {
	reqs := b.GetRequests()
	if len(reqs) == 0 || len(reqs) > MaxBatch {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "a batch holds 1 to %d requests, not %d", MaxBatch, len(reqs))
	}
	out := &tchsmpb.SignBatchResult{Results: make([]*tchsmpb.SignBatchItem, len(reqs))}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(len(reqs), cap(n.exps)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < len(reqs); i = int(next.Add(1)) - 1 {
				out.Results[i] = n.batchItem(ctx, op, reqs[i])
			}
		}()
	}
	wg.Wait()
	return out, nil
}

func (n *node) batchItem(ctx context.Context, op *trust.Opened, req *tchsmpb.SignRequest) (item *tchsmpb.SignBatchItem) {
	defer func() {
		if r := recover(); r != nil {
			item = &tchsmpb.SignBatchItem{Result: &tchsmpb.SignBatchItem_Error{Error: n.internalError(op, "sign_request", r).Proto()}}
		}
	}()
	var body proto.Message
	rerr := rpc.Fail(tchsmpb.Error_EXPIRED, req.GetKeyId(), "deadline passed before the request was served")
	if ctx.Err() == nil {
		body, rerr = n.sign(ctx, op, req)
	}
	if rerr != nil {
		n.countFailure(op, "sign_request", rerr)
		return &tchsmpb.SignBatchItem{Result: &tchsmpb.SignBatchItem_Error{Error: rerr.Proto()}}
	}
	n.metrics.requests.WithLabelValues("sign_request", "ok").Inc()
	return &tchsmpb.SignBatchItem{Result: &tchsmpb.SignBatchItem_Share{Share: body.(*tchsmpb.SignatureShare)}}
}

func (n *node) prove(ctx context.Context, op *trust.Opened, req *tchsmpb.ProofRequest) (proto.Message, *rpc.Failure) {
	k, rerr := n.key(req.GetKeyId())
	if rerr != nil {
		return nil, rerr
	}
	if n.policy.Has(k.Record) && !n.signed.has(k.ID, req.GetPayload()) {
		const why = "a proof for a payload this node did not sign under the key's policy in the last minute"
		n.refused(op, k, "proof_not_signed", why, dnspolicy.Verdict{Mode: dnspolicy.ModeEnforced})
		return nil, rpc.Fail(tchsmpb.Error_POLICY_REFUSED, k.ID, "%s: policy: %s", n.id.ID, why)
	}
	rep, rerr := n.respond(k, scheme.Request{Round: 1, Audit: true, Payload: req.GetPayload(), Requester: op.Sender.ID})
	if rerr != nil {
		return nil, rerr
	}
	if ctx.Err() != nil {
		return nil, rpc.Fail(tchsmpb.Error_EXPIRED, k.ID, "deadline passed while proving")
	}
	return &tchsmpb.Proof{KeyId: k.ID, Index: uint32(k.Share.Index()), X: rep.Payload, Proof: shareProof(rep)}, nil
}
