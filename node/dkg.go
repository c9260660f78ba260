package node

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/internal/rpc"
	"github.com/tchsm/tchsm/internal/trust"
	"github.com/tchsm/tchsm/node/store"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/frost"
	"github.com/tchsm/tchsm/scheme/frost/dkg"
)

// A distributed key generation on a node (DKGRequest steps 0..3, then DKGCommit), run by the
// admin client that started it, which relays the nodes' messages and never sees a share: deals
// are encrypted by the scheme to their recipient's long-term DKG key, and every message is
// signed by its sender's. The node keeps its side in memory only: the share reaches the store
// only with a DKGCommit that carries the record endorsed by k nodes, this one among them. A
// run that is not committed within dkgLifetime is forgotten (its share wiped), so an abandoned
// key generation never leaves a key that looks usable.
const (
	dkgLifetime   = 2 * time.Minute
	maxDKGRuns    = 8
	maxDKGMessage = 64 << 10
	dkgSteps      = 4
	// maxCreatedSkew bounds the creation time a client writes into a record.
	maxCreatedSkew = 24 * time.Hour
)

type dkgRuns struct {
	mu   sync.Mutex
	runs map[string]*dkgRun
}

func newDKGRuns() *dkgRuns { return &dkgRuns{runs: map[string]*dkgRun{}} }

// dkgRun is one key generation in progress on this node.
type dkgRun struct {
	mu        sync.Mutex
	keyID     string
	what      string // "key generation" or "resharing", for logs and errors
	requester string
	start     *tchsmpb.DKGRequest     // step 0 as received (messages dropped)
	rstart    *tchsmpb.ReshareRequest // a resharing's step 0 (messages dropped)
	prev      []byte                  // a resharing: the record bytes stored here at its start (nil: none)
	oldRec    *tchsmpb.KeyRecord      // a resharing: the record reshared
	expires   time.Time
	gen       *dkg.DKG
	next      int                 // the step expected next
	replies   []*tchsmpb.DKGReply // by step, for retries
	record    []byte              // done: the record this node computed and endorsed
	rec       *tchsmpb.KeyRecord
	share     scheme.SecretShare
}

func (r *dkgRun) wipe() {
	if r.share != nil {
		r.share.Wipe()
		r.share = nil
	}
	r.gen = nil
}

// get returns the run of key id, dropping expired ones; create makes one when there is none.
// Expired runs are wiped after d.mu is released (a run's lock is taken before d.mu, never after).
func (d *dkgRuns) get(id string, now time.Time, create func() (*dkgRun, error)) (*dkgRun, error) {
	var expired []*dkgRun
	defer func() {
		for _, r := range expired {
			r.mu.Lock()
			r.wipe()
			r.mu.Unlock()
		}
	}()
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, r := range d.runs {
		if now.After(r.expires) {
			expired = append(expired, r)
			delete(d.runs, k)
		}
	}
	if r := d.runs[id]; r != nil || create == nil {
		return r, nil
	}
	if len(d.runs) >= maxDKGRuns {
		return nil, errTooManyDKGs
	}
	r, err := create()
	if err != nil {
		return nil, err
	}
	d.runs[id] = r
	return r, nil
}

func (d *dkgRuns) drop(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := d.runs[id]; r != nil {
		delete(d.runs, id)
	}
}

var errTooManyDKGs = errors.New("too many key generations in progress")

// dkgStep serves one step of a key generation.
func (n *node) dkgStep(op *trust.Opened, req *tchsmpb.DKGRequest) (proto.Message, *rpc.Failure) {
	id := req.GetKeyId()
	if !trust.ValidKeyID(id) {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "bad key id")
	}
	step := int(req.GetStep())
	if step >= dkgSteps {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "step %d of a %d-step key generation", step, dkgSteps)
	}
	if len(req.GetMessages()) > 2*n.manifest().N() {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "%d messages", len(req.GetMessages()))
	}
	var create func() (*dkgRun, error)
	if step == 0 {
		if f := n.checkDKGStart(req); f != nil {
			return nil, f
		}
		create = func() (*dkgRun, error) { return n.newDKGRun(op, req) }
	}
	r, err := n.dkgs.get(id, time.Now(), create)
	switch {
	case errors.Is(err, errTooManyDKGs):
		return nil, rpc.Fail(tchsmpb.Error_UNAVAILABLE, id, "%v", err)
	case err != nil:
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "%v", err)
	case r == nil:
		return nil, rpc.Fail(tchsmpb.Error_UNKNOWN_KEY, id, "no key generation of this id in progress on %s (expired, or the node restarted)", n.id.ID)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.requester != op.Sender.ID {
		return nil, rpc.Fail(tchsmpb.Error_UNAUTHORIZED, id, "another client runs this key generation")
	}
	if step == 0 && !sameStart(r.start, req) {
		return nil, rpc.Fail(tchsmpb.Error_ALREADY_EXISTS, id, "a key generation of this id with other parameters is in progress")
	}
	return n.runStep(op, n.dkgs, r, step, req.GetMessages(), func(rep *tchsmpb.DKGReply) *rpc.Failure { return n.dkgDone(r, rep) })
}

// runStep runs the next step of a key generation or a resharing r (locked by the caller) with
// the messages relayed to this node, and keeps the reply for retries; done builds the record
// at the last step. A run that fails is wiped and dropped from runs.
func (n *node) runStep(op *trust.Opened, runs *dkgRuns, r *dkgRun, step int, msgs []*tchsmpb.DKGMessage, done func(*tchsmpb.DKGReply) *rpc.Failure) (proto.Message, *rpc.Failure) {
	id := r.keyID
	if step < r.next {
		return r.replies[step], nil // a retry: the same answer
	}
	if step != r.next || r.gen == nil {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "step %d, expected %d", step, r.next)
	}
	in := make([]scheme.Message, 0, len(msgs))
	for _, m := range msgs {
		from, to := int(m.GetFrom()), int(m.GetTo())
		if from < 1 || from > n.manifest().N() || from == n.self.Index || (to != 0 && to != n.self.Index) || len(m.GetPayload()) > maxDKGMessage {
			return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "a message from %d to %d of %d bytes", from, to, len(m.GetPayload()))
		}
		in = append(in, scheme.Message{From: from, To: to, Payload: m.GetPayload()})
	}
	out, fin, err := r.gen.Step(in)
	if err != nil {
		// The protocol cannot complete here (too few qualified dealers): forget the run.
		n.log.Warn(r.what+" failed", "key", id, "step", step, "by", op.Sender.ID, "reason", err.Error())
		r.wipe()
		runs.drop(id)
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "%s failed at step %d: %v", r.what, step, err)
	}
	rep := &tchsmpb.DKGReply{KeyId: id, Step: uint32(step)}
	for _, m := range out {
		rep.Messages = append(rep.Messages, &tchsmpb.DKGMessage{From: uint32(m.From), To: uint32(m.To), Payload: m.Payload})
	}
	if fin {
		if f := done(rep); f != nil {
			r.wipe()
			runs.drop(id)
			return nil, f
		}
	}
	r.replies = append(r.replies, rep)
	r.next++
	return rep, nil
}

// checkDKGStart checks step 0's public description of the key.
func (n *node) checkDKGStart(req *tchsmpb.DKGRequest) *rpc.Failure {
	id := req.GetKeyId()
	if scheme.Algorithm(req.GetAlgorithm()) != scheme.Ed25519FROST {
		return rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "algorithm %v is not generated by the nodes", scheme.Algorithm(req.GetAlgorithm()))
	}
	if k := int(req.GetK()); k < 2 || k > n.manifest().N() {
		return rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "k=%d with %d nodes (need 2 ≤ k ≤ n)", k, n.manifest().N())
	}
	if len(req.GetLabel()) > trust.MaxLabelLen || len(req.GetP11Id()) > trust.MaxP11IDLen {
		return rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "label or CKA_ID too long")
	}
	if d := time.Since(time.Unix(req.GetCreatedUnix(), 0)); d > maxCreatedSkew || d < -maxCreatedSkew {
		return rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "creation time %d is more than %v from this node's clock", req.GetCreatedUnix(), maxCreatedSkew)
	}
	if _, err := n.store.Get(id); err == nil {
		return rpc.Fail(tchsmpb.Error_ALREADY_EXISTS, id, "key exists")
	}
	if gone, err := n.store.Deleted(id); err != nil || gone {
		return rpc.Fail(tchsmpb.Error_ALREADY_EXISTS, id, "key id used before (deleted)")
	}
	return nil
}

func (n *node) newDKGRun(op *trust.Opened, req *tchsmpb.DKGRequest) (*dkgRun, error) {
	pubs, err := n.manifest().DKGPublicKeys()
	if err != nil {
		return nil, err
	}
	secret, _, err := n.id.DKGKey()
	if err != nil {
		return nil, err
	}
	defer clear(secret)
	p := scheme.DKGParams{Session: dkgSession(n.manifest().ClusterID, req.GetKeyId()), Secret: secret, Public: pubs}
	gen, err := dkg.NewDKG(n.self.Index, int(req.GetK()), p, rand.Reader)
	if err != nil {
		return nil, err
	}
	start := proto.Clone(req).(*tchsmpb.DKGRequest)
	start.Messages = nil
	n.log.Info("key generation started", "key", req.GetKeyId(), "by", op.Sender.ID, "k", req.GetK(), "n", n.manifest().N())
	return &dkgRun{keyID: req.GetKeyId(), what: "key generation", requester: op.Sender.ID, start: start, expires: time.Now().Add(dkgLifetime), gen: gen}, nil
}

// dkgSession binds every DKG message to this cluster and key id.
func dkgSession(cluster, keyID string) []byte {
	return []byte("tchsm/v1/dkg/" + cluster + "/" + keyID)
}

func sameStart(a, b *tchsmpb.DKGRequest) bool {
	return a.GetAlgorithm() == b.GetAlgorithm() && a.GetK() == b.GetK() && a.GetLabel() == b.GetLabel() &&
		bytes.Equal(a.GetP11Id(), b.GetP11Id()) && a.GetCreatedUnix() == b.GetCreatedUnix()
}

// dkgDone builds the key record from the outcome and the start's description, endorses it, and
// keeps the share until the commit.
func (n *node) dkgDone(r *dkgRun, rep *tchsmpb.DKGReply) *rpc.Failure {
	id := r.start.GetKeyId()
	pk, share, err := r.gen.Result()
	if err != nil {
		return rpc.Fail(tchsmpb.Error_INTERNAL, id, "key generation outcome: %v", err)
	}
	rec := &tchsmpb.KeyRecord{KeyId: id, Label: r.start.GetLabel(), P11Id: r.start.GetP11Id(),
		CreatedUnix: r.start.GetCreatedUnix(), ClusterId: n.manifest().ClusterID}
	if err := (frost.Scheme{}).EncodePublic(pk, rec); err != nil {
		return rpc.Fail(tchsmpb.Error_INTERNAL, id, "key record: %v", err)
	}
	raw, end, err := trust.EndorseKeyRecord(n.id, rec)
	if err != nil {
		return rpc.Fail(tchsmpb.Error_INTERNAL, id, "key record: %v", err)
	}
	for _, q := range r.gen.Qualified() {
		rep.Qualified = append(rep.Qualified, uint32(q))
	}
	r.record, r.rec, r.share = raw, rec, share
	r.gen = nil
	rep.Done, rep.Record, rep.Endorsement = true, raw, end
	return nil
}

// checkCommit checks a commit of run r (a key generation or a resharing; r.mu held): sent by
// the client that runs it, after its last step, with the record this node computed, endorsed
// by k nodes under the manifest, this node among them. It returns the record.
func (n *node) checkCommit(op *trust.Opened, r *dkgRun, signed *tchsmpb.SignedKeyRecord) (*tchsmpb.KeyRecord, *rpc.Failure) {
	id := r.keyID
	if r.requester != op.Sender.ID {
		return nil, rpc.Fail(tchsmpb.Error_UNAUTHORIZED, id, "another client runs this %s", r.what)
	}
	if r.share == nil || r.record == nil {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "the %s is not done", r.what)
	}
	if signed == nil || !bytes.Equal(signed.GetRecord(), r.record) {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "the record differs from the one this node computed")
	}
	rec, err := trust.VerifyKeyRecord(n.manifest(), signed)
	if err != nil {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "%v", err)
	}
	mine := false
	for _, e := range signed.GetEndorsements() {
		mine = mine || e.GetNode() == n.id.ID
	}
	if !mine {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "the record lacks this node's endorsement")
	}
	return rec, nil
}

// dkgCommit stores the share of a key this node generated, once the record carries k
// endorsements, this node's among them.
func (n *node) dkgCommit(op *trust.Opened, req *tchsmpb.DKGCommit) (proto.Message, *rpc.Failure) {
	id := req.GetKeyId()
	if !trust.ValidKeyID(id) {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "bad key id")
	}
	signed := req.GetRecord()
	ack := &tchsmpb.DKGCommitAck{KeyId: id, Node: n.id.ID, Ok: true}
	if k, err := n.store.Get(id); err == nil {
		if proto.Equal(k.Signed, signed) || (signed != nil && bytes.Equal(k.Signed.GetRecord(), signed.GetRecord())) {
			return ack, nil // a retry after the share was stored
		}
		return nil, rpc.Fail(tchsmpb.Error_ALREADY_EXISTS, id, "key exists with another record")
	}
	r, _ := n.dkgs.get(id, time.Now(), nil)
	if r == nil {
		return nil, rpc.Fail(tchsmpb.Error_UNKNOWN_KEY, id, "no key generation of this id is waiting on %s (expired, or the node restarted)", n.id.ID)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, f := n.checkCommit(op, r, signed)
	if f != nil {
		return nil, f
	}
	if err := n.store.Put(signed, rec, r.share); err != nil {
		if errors.Is(err, store.ErrDeleted) || errors.Is(err, store.ErrConflict) {
			return nil, rpc.Fail(tchsmpb.Error_ALREADY_EXISTS, id, "%v", err)
		}
		return nil, rpc.Fail(tchsmpb.Error_INTERNAL, id, "store failure")
	}
	r.wipe()
	n.dkgs.drop(id)
	n.metrics.keys.Set(float64(n.store.Len()))
	n.log.Info("key generated", "key", id, "by", op.Sender.ID, "endorsements", len(signed.GetEndorsements()))
	return ack, nil
}

// lateDeals computes, checks and stores this node's share of a key generated while it was
// down, from the deals the qualified dealers addressed to it (DKGLateDeals, forwarded by the
// dealer to the control queue). Like a KeyShareDelivery it returns nil only once the share is
// on disk (or when there is nothing to do: the key is stored already, or was deleted); a
// message that cannot give a share that matches the record's verification share is refused
// for good.
func (n *node) lateDeals(op *trust.Opened, m *tchsmpb.DKGLateDeals) error {
	const kind = "dkg_late_deals"
	if op.Sender.Role != trust.RoleDealer {
		return n.permanent(op.Sender.ID, kind, "sender is not a dealer")
	}
	if m.GetRecipient() != n.id.ID {
		return n.permanent(op.Sender.ID, kind, fmt.Sprintf("deals addressed to %.64q", m.GetRecipient()))
	}
	signed := m.GetRecord()
	rec, err := trust.VerifyKeyRecord(n.manifest(), signed)
	if err != nil {
		return n.permanent(op.Sender.ID, kind, err.Error())
	}
	id := rec.GetKeyId()
	if scheme.Of(rec) != scheme.Ed25519FROST || int(rec.GetN()) != n.manifest().N() {
		return n.permanent(op.Sender.ID, kind, fmt.Sprintf("key %s: algorithm %v, n=%d with %d nodes", id, scheme.Of(rec), rec.GetN(), n.manifest().N()))
	}
	if dead, err := n.store.Deleted(id); err != nil {
		n.metrics.control.WithLabelValues(kind, "retry").Inc()
		return err
	} else if dead {
		n.log.Info("late deals for a deleted key ignored", "key", id, "sender", op.Sender.ID)
		n.metrics.control.WithLabelValues(kind, "deleted").Inc()
		return nil
	}
	if k, err := n.store.Get(id); err == nil {
		if bytes.Equal(k.Signed.GetRecord(), signed.GetRecord()) {
			n.metrics.control.WithLabelValues(kind, "ok").Inc()
			return nil // a redelivery, or the share came another way
		}
		return n.permanent(op.Sender.ID, kind, fmt.Sprintf("key %s exists with another record", id))
	}
	_, pub, err := store.PublicKey(rec)
	if err != nil {
		return n.permanent(op.Sender.ID, kind, fmt.Sprintf("key %s: %v", id, err))
	}
	pk, ok := pub.(*frost.PublicKey)
	if !ok {
		return n.permanent(op.Sender.ID, kind, fmt.Sprintf("key %s: not a FROST key", id))
	}
	if len(m.GetDeals()) > n.manifest().N() || len(m.GetQualified()) > n.manifest().N() {
		return n.permanent(op.Sender.ID, kind, fmt.Sprintf("key %s: %d deals, %d qualified", id, len(m.GetDeals()), len(m.GetQualified())))
	}
	deals := make([]scheme.Message, 0, len(m.GetDeals()))
	for _, d := range m.GetDeals() {
		from, to := int(d.GetFrom()), int(d.GetTo())
		if from < 1 || from > n.manifest().N() || to != n.self.Index || len(d.GetPayload()) > maxDKGMessage {
			return n.permanent(op.Sender.ID, kind, fmt.Sprintf("key %s: a message from %d to %d of %d bytes", id, from, to, len(d.GetPayload())))
		}
		deals = append(deals, scheme.Message{From: from, To: to, Payload: d.GetPayload()})
	}
	qual := make([]int, 0, len(m.GetQualified()))
	for _, q := range m.GetQualified() {
		qual = append(qual, int(q))
	}
	pubs, err := n.manifest().DKGPublicKeys()
	if err != nil {
		return n.permanent(op.Sender.ID, kind, err.Error())
	}
	secret, _, err := n.id.DKGKey()
	if err != nil {
		return n.permanent(op.Sender.ID, kind, err.Error())
	}
	p := scheme.DKGParams{Session: dkgSession(n.manifest().ClusterID, id), Secret: secret, Public: pubs}
	share, err := dkg.LateShare(n.self.Index, int(rec.GetK()), p, qual, deals, pk)
	clear(secret)
	if err != nil {
		return n.permanent(op.Sender.ID, kind, fmt.Sprintf("key %s: %v", id, err))
	}
	defer share.Wipe()
	if stored, err := n.storeShare(op, kind, "late deals", signed, rec, share); !stored {
		return err
	}
	n.log.Info("key share computed from late deals and stored", "key", id, "label", rec.GetLabel(), "algorithm", scheme.Of(rec).String(),
		"k", rec.GetK(), "n", rec.GetN(), "dealers", qual, "dealer", op.Sender.ID)
	return nil
}
