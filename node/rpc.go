package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	"github.com/tchsm/tchsm/node/store"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
)

// ErrRejected is the error (sent back as a plain transport error) for requests that do not open.
var ErrRejected = errors.New("node: request rejected")

// reqError is a failure answered with a sealed Error body.
type reqError struct {
	code  tchsmpb.Error_Code
	msg   string
	keyID string
}

func (e *reqError) Error() string { return fmt.Sprintf("node: %v: %s", e.code, e.msg) }

// proto is the Error body that answers e.
func (e *reqError) proto() *tchsmpb.Error {
	return &tchsmpb.Error{Code: e.code, Message: e.msg, KeyId: e.keyID}
}

func fail(code tchsmpb.Error_Code, keyID, format string, args ...any) *reqError {
	return &reqError{code: code, keyID: keyID, msg: fmt.Sprintf(format, args...)}
}

// openSentinels are the categories a rejected request is told about.
var openSentinels = []error{trust.ErrMalformed, trust.ErrWrongCluster, trust.ErrUnknownSender, trust.ErrBadSignature,
	trust.ErrUnauthorized, trust.ErrExpired, trust.ErrReplay, trust.ErrReplayCacheFull}

func sentinel(err error) error {
	for _, s := range openSentinels {
		if errors.Is(err, s) {
			return s
		}
	}
	return trust.ErrMalformed
}

// claimedSender returns the sender an envelope claims to come from, for logs only.
func claimedSender(raw []byte) string {
	var env tchsmpb.Envelope
	if proto.Unmarshal(raw, &env) != nil {
		return "?"
	}
	s := env.GetSender()
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.ToValidUTF8(s, "?")
}

// handleRPC serves one request of the rpc queue.
func (n *node) handleRPC(ctx context.Context, d transport.Delivery) (reply []byte, err error) {
	n.metrics.inFlight.Inc()
	n.inFlight.Add(1)
	defer func() {
		n.inFlight.Add(-1)
		n.metrics.inFlight.Dec()
	}()
	op, err := n.opener.Open(d.Body)
	if err != nil {
		s := sentinel(err)
		n.log.Warn("request rejected", "claimed_sender", claimedSender(d.Body), "reason", err.Error())
		n.metrics.requests.WithLabelValues("rejected", "rejected").Inc()
		return nil, fmt.Errorf("%w: %w", ErrRejected, s)
	}
	typ := strings.ToLower(strings.TrimPrefix(op.Type.String(), "BODY_TYPE_"))
	defer func() {
		// Last resort: nothing in a request may take the node down.
		if r := recover(); r != nil {
			reply, err = n.sealError(op, n.internalError(op, typ, r))
		}
	}()
	body, rerr := n.dispatch(ctx, op)
	if rerr != nil {
		n.countFailure(op, typ, rerr)
		return n.sealError(op, rerr)
	}
	n.metrics.requests.WithLabelValues(typ, "ok").Inc()
	out, err := n.sealer.Reply(op, tchsmpb.BodyTypeOf(body), body, replyTTL(op))
	if err != nil {
		n.log.Error("sealing reply", "err", err)
		return nil, fmt.Errorf("node: internal error")
	}
	return out, nil
}

// internalError logs and counts a panic recovered while serving a request of type typ (nothing
// in a request may take the node down) and returns the INTERNAL error that answers it.
func (n *node) internalError(op *trust.Opened, typ string, r any) *reqError {
	n.log.Error("panic while serving a request", "sender", op.Sender.ID, "type", typ,
		"panic_type", fmt.Sprintf("%T", r), "stack", string(debug.Stack()))
	n.metrics.requests.WithLabelValues(typ, "internal").Inc()
	return fail(tchsmpb.Error_INTERNAL, "", "internal error")
}

// countFailure counts and logs a request that was answered with an Error.
func (n *node) countFailure(op *trust.Opened, typ string, rerr *reqError) {
	result := strings.ToLower(rerr.code.String())
	n.metrics.requests.WithLabelValues(typ, result).Inc()
	if rerr.keyID != "" {
		n.metrics.keyErrors.WithLabelValues(n.keyLabel(rerr.keyID), result).Inc()
	}
	lvl := n.log.Debug
	if rerr.code == tchsmpb.Error_INTERNAL {
		lvl = n.log.Error
	}
	lvl("request failed", "sender", op.Sender.ID, "type", typ, "code", rerr.code.String(), "key", rerr.keyID, "reason", rerr.msg)
}

// keyLabel keeps the metrics' key label bounded: only keys the node holds get their own label.
func (n *node) keyLabel(id string) string {
	if _, err := n.store.Get(id); err == nil {
		return id
	}
	return "unknown"
}

func replyTTL(op *trust.Opened) time.Duration {
	return min(max(time.Until(op.Deadline), time.Second), trust.DefaultMaxTTL)
}

func (n *node) sealError(op *trust.Opened, e *reqError) ([]byte, error) {
	out, err := n.sealer.Reply(op, tchsmpb.BodyType_BODY_TYPE_ERROR, e.proto(), replyTTL(op))
	if err != nil {
		n.log.Error("sealing error reply", "err", err)
		return nil, fmt.Errorf("node: internal error")
	}
	return out, nil
}

func (n *node) dispatch(ctx context.Context, op *trust.Opened) (proto.Message, *reqError) {
	if ctx.Err() != nil {
		return nil, fail(tchsmpb.Error_EXPIRED, "", "deadline passed before the request was served")
	}
	switch m := op.Message.(type) {
	case *tchsmpb.SignRequest:
		return n.sign(ctx, op, m)
	case *tchsmpb.SignBatch:
		return n.signBatch(ctx, op, m)
	case *tchsmpb.ProofRequest:
		return n.prove(ctx, op, m)
	case *tchsmpb.ListKeys:
		kl := &tchsmpb.KeyList{Node: n.id.ID}
		for _, k := range n.store.List() {
			kl.Keys = append(kl.Keys, k.Signed)
		}
		return kl, nil
	case *tchsmpb.HealthRequest:
		h := &tchsmpb.Health{Node: n.id.ID, Version: n.opts.Version, UptimeNanos: int64(time.Since(n.started)),
			InFlight: uint32(max(n.inFlight.Load()-1, 0))}
		for _, k := range n.store.List() {
			h.KeyIds = append(h.KeyIds, k.ID)
		}
		return h, nil
	case *tchsmpb.DeleteKey:
		id := m.GetKeyId()
		if !trust.ValidKeyID(id) {
			return nil, fail(tchsmpb.Error_BAD_REQUEST, "", "bad key id")
		}
		had, err := n.store.Delete(id)
		if err != nil {
			return nil, fail(tchsmpb.Error_INTERNAL, id, "store failure")
		}
		n.metrics.keys.Set(float64(n.store.Len()))
		n.log.Info("key deleted", "key", id, "by", op.Sender.ID, "held", had)
		return &tchsmpb.DeleteKeyAck{KeyId: id, Node: n.id.ID, Ok: true}, nil
	default:
		return nil, fail(tchsmpb.Error_BAD_REQUEST, "", "%v is not served on the rpc queue", op.Type)
	}
}

// key returns a stored key for a request.
func (n *node) key(id string) (*store.Key, *reqError) {
	if !trust.ValidKeyID(id) {
		return nil, fail(tchsmpb.Error_BAD_REQUEST, "", "bad key id")
	}
	k, err := n.store.Get(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fail(tchsmpb.Error_UNKNOWN_KEY, id, "no share of this key on %s", n.id.ID)
	}
	if err != nil {
		return nil, fail(tchsmpb.Error_UNAVAILABLE, id, "store unavailable")
	}
	return k, nil
}

// respond answers one round of a signing session with the stored key's participant (the node
// builds everything it signs from the key's own record), once the node has fewer than its
// worker count running.
func (n *node) respond(k *store.Key, req scheme.Request) (scheme.Reply, *reqError) {
	rep, err := n.runRespond(k, req)
	switch {
	case errors.Is(err, scheme.ErrInvalidRequest):
		return scheme.Reply{}, fail(tchsmpb.Error_BAD_REQUEST, k.ID, "%v", err)
	case err != nil && req.Audit:
		return scheme.Reply{}, fail(tchsmpb.Error_INTERNAL, k.ID, "proof failed")
	case err != nil:
		return scheme.Reply{}, fail(tchsmpb.Error_INTERNAL, k.ID, "signing failed")
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

func (n *node) sign(ctx context.Context, op *trust.Opened, req *tchsmpb.SignRequest) (proto.Message, *reqError) {
	k, rerr := n.key(req.GetKeyId())
	if rerr != nil {
		return nil, rerr
	}
	t0 := time.Now()
	// want_proof asks for the share and its proof at once: the audit of the same round.
	rep, rerr := n.respond(k, scheme.Request{Round: 1, Audit: req.GetWantProof(), Payload: req.GetPayload()})
	if rerr != nil {
		return nil, rerr
	}
	out := &tchsmpb.SignatureShare{KeyId: k.ID, Index: uint32(k.Share.Index()), X: rep.Payload}
	if req.GetWantProof() {
		out.Proof = shareProof(rep)
	}
	n.metrics.signSeconds.Observe(time.Since(t0).Seconds())
	if ctx.Err() != nil {
		return nil, fail(tchsmpb.Error_EXPIRED, k.ID, "deadline passed while signing")
	}
	return out, nil
}

// MaxBatch is the largest SignBatch a node serves.
const MaxBatch = config.MaxBatch

// signBatch serves the requests of a batch in parallel (the exps semaphore bounds the node's
// exponentiations) and answers each with a share or an Error, in order. Each request counts in
// the metrics as a sign_request of its own.
func (n *node) signBatch(ctx context.Context, op *trust.Opened, b *tchsmpb.SignBatch) (proto.Message, *reqError) {
	reqs := b.GetRequests()
	if len(reqs) == 0 || len(reqs) > MaxBatch {
		return nil, fail(tchsmpb.Error_BAD_REQUEST, "", "a batch holds 1 to %d requests, not %d", MaxBatch, len(reqs))
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
			item = &tchsmpb.SignBatchItem{Result: &tchsmpb.SignBatchItem_Error{Error: n.internalError(op, "sign_request", r).proto()}}
		}
	}()
	var body proto.Message
	rerr := fail(tchsmpb.Error_EXPIRED, req.GetKeyId(), "deadline passed before the request was served")
	if ctx.Err() == nil {
		body, rerr = n.sign(ctx, op, req)
	}
	if rerr != nil {
		n.countFailure(op, "sign_request", rerr)
		return &tchsmpb.SignBatchItem{Result: &tchsmpb.SignBatchItem_Error{Error: rerr.proto()}}
	}
	n.metrics.requests.WithLabelValues("sign_request", "ok").Inc()
	return &tchsmpb.SignBatchItem{Result: &tchsmpb.SignBatchItem_Share{Share: body.(*tchsmpb.SignatureShare)}}
}

func (n *node) prove(ctx context.Context, op *trust.Opened, req *tchsmpb.ProofRequest) (proto.Message, *reqError) {
	k, rerr := n.key(req.GetKeyId())
	if rerr != nil {
		return nil, rerr
	}
	rep, rerr := n.respond(k, scheme.Request{Round: 1, Audit: true, Payload: req.GetPayload()})
	if rerr != nil {
		return nil, rerr
	}
	if ctx.Err() != nil {
		return nil, fail(tchsmpb.Error_EXPIRED, k.ID, "deadline passed while proving")
	}
	return &tchsmpb.Proof{KeyId: k.ID, Index: uint32(k.Share.Index()), X: rep.Payload, Proof: shareProof(rep)}, nil
}
