package node

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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

// A resharing of a key the nodes generated (ReshareRequest steps 0..3, then ReshareCommit),
// run by an admin client like a key generation (dkg.go) and kept in memory the same way: the
// node that holds the share of the record named at step 0 deals it (dkg.NewReshare), every
// node receives, and the node's new share reaches the store only with a ReshareCommit that
// carries the next epoch's record endorsed by k nodes, this one among them; the store then
// swaps record and share in one transaction (store.Replace). A node that holds no share of the
// key (a new identity in a lost node's place), or the share of an earlier epoch, only
// receives. Nothing from the wire is trusted that a node can check itself: the record named
// must verify (k endorsements by nodes of this manifest), and a node that holds the key deals
// only when that record is exactly the one it stores.

const reshareRunLen = 16

// reshareStep serves one step of a resharing.
func (n *node) reshareStep(op *trust.Opened, req *tchsmpb.ReshareRequest) (proto.Message, *rpc.Failure) {
	id := req.GetKeyId()
	if !trust.ValidKeyID(id) {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "bad key id")
	}
	step := int(req.GetStep())
	if step >= dkgSteps {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "step %d of a %d-step resharing", step, dkgSteps)
	}
	if len(req.GetMessages()) > 2*n.manifest().N() {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "%d messages", len(req.GetMessages()))
	}
	var create func() (*dkgRun, error)
	if step == 0 {
		r, f := n.newReshareRun(op, req)
		if f != nil {
			return nil, f
		}
		create = func() (*dkgRun, error) { return r, nil }
		// The same client starting another run (its previous one failed, or it gave up on
		// it): the previous run is forgotten, nothing of it was stored.
		if old, _ := n.reshares.get(id, time.Now(), nil); old != nil {
			old.mu.Lock()
			replace := old.requester == op.Sender.ID && !bytes.Equal(old.rstart.GetRun(), req.GetRun())
			if replace {
				old.wipe()
			}
			old.mu.Unlock()
			if replace {
				n.reshares.drop(id)
			}
		}
	}
	r, err := n.reshares.get(id, time.Now(), create)
	switch {
	case errors.Is(err, errTooManyDKGs):
		return nil, rpc.Fail(tchsmpb.Error_UNAVAILABLE, id, "%v", err)
	case err != nil:
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "%v", err)
	case r == nil:
		return nil, rpc.Fail(tchsmpb.Error_UNKNOWN_KEY, id, "no resharing of this key in progress on %s (expired, or the node restarted)", n.id.ID)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.requester != op.Sender.ID {
		return nil, rpc.Fail(tchsmpb.Error_UNAUTHORIZED, id, "another client reshares this key")
	}
	if step == 0 && (!bytes.Equal(r.rstart.GetRun(), req.GetRun()) || !bytes.Equal(r.rstart.GetRecord().GetRecord(), req.GetRecord().GetRecord())) {
		return nil, rpc.Fail(tchsmpb.Error_ALREADY_EXISTS, id, "another resharing of this key is in progress")
	}
	return n.runStep(op, n.reshares, r, step, req.GetMessages(), func(rep *tchsmpb.DKGReply) *rpc.Failure { return n.reshareDone(r, rep) })
}

// newReshareRun checks step 0 (the record named, this node's own copy of the key) and starts
// this node's side of the resharing.
func (n *node) newReshareRun(op *trust.Opened, req *tchsmpb.ReshareRequest) (*dkgRun, *rpc.Failure) {
	id := req.GetKeyId()
	if len(req.GetRun()) != reshareRunLen {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "run id of %d bytes, want %d", len(req.GetRun()), reshareRunLen)
	}
	signed := req.GetRecord()
	// A record endorsed by k nodes of which some were replaced since is what a resharing
	// repairs: accepted here (a holder deals only when it stores the very same record, and the
	// outcome needs k endorsements by nodes of this manifest again).
	rec, full, err := trust.VerifyKeyRecordBeforeReplacement(n.manifest(), signed)
	if err != nil {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "%v", err)
	}
	if !full {
		n.log.Info("resharing a record with fewer than k endorsements by nodes of the manifest", "key", id)
	}
	if rec.GetKeyId() != id || scheme.Of(rec) != scheme.Ed25519FROST || int(rec.GetN()) != n.manifest().N() {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "the record is of key %s, algorithm %v, n=%d (a resharing is for keys the nodes generated, n=%d)",
			rec.GetKeyId(), scheme.Of(rec), rec.GetN(), n.manifest().N())
	}
	if rec.GetEpoch() >= 1<<31 {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "epoch %d", rec.GetEpoch())
	}
	if gone, err := n.store.Deleted(id); err != nil {
		return nil, rpc.Fail(tchsmpb.Error_INTERNAL, id, "store failure")
	} else if gone {
		return nil, rpc.Fail(tchsmpb.Error_UNKNOWN_KEY, id, "the key is deleted on %s", n.id.ID)
	}
	_, pub, err := store.PublicKey(rec)
	if err != nil {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "%v", err)
	}
	pk, ok := pub.(*frost.PublicKey)
	if !ok {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "not a FROST key")
	}
	var (
		held *frost.SecretShare
		prev []byte
	)
	if k, err := n.store.Get(id); err == nil {
		prev = bytes.Clone(k.Signed.GetRecord())
		switch {
		case bytes.Equal(prev, signed.GetRecord()):
			sh, ok := k.Share.(*frost.SecretShare)
			if !ok {
				return nil, rpc.Fail(tchsmpb.Error_INTERNAL, id, "the stored share is not a FROST share")
			}
			held = sh
		case k.Record.GetEpoch() >= rec.GetEpoch():
			// This node holds the key at this epoch or a later one, from another record: the
			// client names an old record (or a resharing it does not know of completed here).
			return nil, rpc.Fail(tchsmpb.Error_OLD_RECORD, id, "%s holds epoch %d of this key, the resharing names epoch %d", n.id.ID, k.Record.GetEpoch(), rec.GetEpoch())
		case !samePublicKey(k.Record, rec):
			return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "the record names another public key than the one stored here")
		}
		// Otherwise this node holds an earlier epoch's share: it only receives.
	}
	pubs, err := n.manifest().DKGPublicKeys()
	if err != nil {
		return nil, rpc.Fail(tchsmpb.Error_INTERNAL, id, "%v", err)
	}
	secret, _, err := n.id.DKGKey()
	if err != nil {
		return nil, rpc.Fail(tchsmpb.Error_INTERNAL, id, "%v", err)
	}
	defer clear(secret)
	p := scheme.DKGParams{Session: reshareSession(n.manifest().ClusterID, id, rec.GetEpoch(), req.GetRun()), Secret: secret, Public: pubs}
	gen, err := dkg.NewReshare(n.self.Index, p, pk, held, rand.Reader)
	if err != nil {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, id, "%v", err)
	}
	start := proto.Clone(req).(*tchsmpb.ReshareRequest)
	start.Messages = nil
	n.log.Info("resharing started", "key", id, "by", op.Sender.ID, "epoch", rec.GetEpoch(), "deals", held != nil)
	return &dkgRun{keyID: id, what: "resharing", requester: op.Sender.ID, rstart: start, prev: prev, oldRec: rec,
		expires: time.Now().Add(dkgLifetime), gen: gen}, nil
}

// samePublicKey reports whether two FROST records name the same group key.
func samePublicKey(a, b *tchsmpb.KeyRecord) bool {
	_, pa, errA := store.PublicKey(a)
	_, pb, errB := store.PublicKey(b)
	if errA != nil || errB != nil {
		return false
	}
	fa, okA := pa.(*frost.PublicKey)
	fb, okB := pb.(*frost.PublicKey)
	return okA && okB && bytes.Equal(fa.Bytes(), fb.Bytes())
}

// reshareSession binds every message of a resharing to this cluster, key, epoch and run.
func reshareSession(cluster, keyID string, epoch uint32, run []byte) []byte {
	return fmt.Appendf(nil, "tchsm/v1/reshare/%s/%s/%d/%s", cluster, keyID, epoch, hex.EncodeToString(run))
}

// reshareDone builds the next epoch's record (the old one's description, the new verification
// shares), checks that the key is the same, endorses it and keeps the share until the commit.
func (n *node) reshareDone(r *dkgRun, rep *tchsmpb.DKGReply) *rpc.Failure {
	id := r.keyID
	pk, share, err := r.gen.Result()
	if err != nil {
		return rpc.Fail(tchsmpb.Error_INTERNAL, id, "resharing outcome: %v", err)
	}
	rec := proto.Clone(r.oldRec).(*tchsmpb.KeyRecord)
	rec.Epoch++
	if err := (frost.Scheme{}).EncodePublic(pk, rec); err != nil {
		return rpc.Fail(tchsmpb.Error_INTERNAL, id, "key record: %v", err)
	}
	if !samePublicKey(r.oldRec, rec) {
		return rpc.Fail(tchsmpb.Error_INTERNAL, id, "the resharing changed the public key")
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

// reshareCommit replaces this node's record and share of the key with the resharing's, once
// the next epoch's record carries k endorsements, this node's among them.
func (n *node) reshareCommit(op *trust.Opened, req *tchsmpb.ReshareCommit) (proto.Message, *rpc.Failure) {
	id := req.GetKeyId()
	if !trust.ValidKeyID(id) {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "bad key id")
	}
	signed := req.GetRecord()
	ack := &tchsmpb.DKGCommitAck{KeyId: id, Node: n.id.ID, Ok: true}
	r, _ := n.reshares.get(id, time.Now(), nil)
	if r == nil {
		if k, err := n.store.Get(id); err == nil && signed != nil && bytes.Equal(k.Signed.GetRecord(), signed.GetRecord()) {
			return ack, nil // a retry after the share was replaced
		}
		return nil, rpc.Fail(tchsmpb.Error_UNKNOWN_KEY, id, "no resharing of this key is waiting on %s (expired, or the node restarted)", n.id.ID)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, f := n.checkCommit(op, r, signed)
	if f != nil {
		return nil, f
	}
	var err error
	if r.prev == nil {
		err = n.store.Put(signed, rec, r.share)
	} else {
		err = n.store.Replace(r.prev, signed, rec, r.share)
	}
	switch {
	case errors.Is(err, store.ErrDeleted):
		return nil, rpc.Fail(tchsmpb.Error_UNKNOWN_KEY, id, "%v", err)
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotFound):
		return nil, rpc.Fail(tchsmpb.Error_ALREADY_EXISTS, id, "the key changed on this node during the resharing: %v", err)
	case err != nil:
		return nil, rpc.Fail(tchsmpb.Error_INTERNAL, id, "store failure")
	}
	r.wipe()
	n.reshares.drop(id)
	n.metrics.keys.Set(float64(n.store.Len()))
	n.log.Info("key reshared: share and record replaced", "key", id, "by", op.Sender.ID, "epoch", rec.GetEpoch(),
		"endorsements", len(signed.GetEndorsements()))
	return ack, nil
}
