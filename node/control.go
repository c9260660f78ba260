package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/tchsm/tchsm/internal/rpc"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	"github.com/tchsm/tchsm/node/store"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
)

// ErrBadDelivery wraps every reason a control message is dead-lettered.
var ErrBadDelivery = errors.New("node: control message refused")

// permanent logs a refused control message and returns the error that dead-letters it.
func (n *node) permanent(sender, kind, reason string) error {
	n.log.Warn("control message refused", "sender", sender, "type", kind, "reason", reason)
	n.metrics.control.WithLabelValues(kind, "refused").Inc()
	return fmt.Errorf("%w: %w: %s", transport.ErrPermanent, ErrBadDelivery, reason)
}

// handleControl processes one message of the durable control queue. It returns nil only once
// the message's effect is durable; see the package doc.
func (n *node) handleControl(ctx context.Context, body []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			n.log.Error("panic while handling a control message", "panic_type", fmt.Sprintf("%T", r), "stack", string(debug.Stack()))
			err = fmt.Errorf("%w: %w: internal error", transport.ErrPermanent, ErrBadDelivery)
		}
	}()
	// A fresh opener: control messages are idempotent and may be redelivered (see package doc).
	opener, err := trust.NewOpener(n.manifest())
	if err != nil {
		return err // cannot happen: the manifest was validated at start-up
	}
	op, err := opener.Open(body)
	if err != nil {
		return n.permanent(rpc.ClaimedSender(body), "unopened", err.Error())
	}
	switch m := op.Message.(type) {
	case *tchsmpb.KeyShareDelivery:
		return n.deliver(op, m)
	case *tchsmpb.DKGLateDeals:
		return n.lateDeals(op, m)
	case *tchsmpb.DeleteKey:
		id := m.GetKeyId()
		if op.Sender.Role != trust.RoleDealer {
			// One deletion path: clients ask the dealer, which decides (roles, grace periods).
			return n.permanent(op.Sender.ID, "delete_key", "only the dealer deletes keys")
		}
		if !trust.ValidKeyID(id) {
			return n.permanent(op.Sender.ID, "delete_key", "bad key id")
		}
		if _, err := n.deleteKey(op, id); err != nil {
			n.log.Error("store failure on delete; will retry", "key", id, "err", err)
			n.metrics.control.WithLabelValues("delete_key", "retry").Inc()
			return err
		}
		n.metrics.control.WithLabelValues("delete_key", "ok").Inc()
		return nil
	case *tchsmpb.RestoreKey:
		return n.restore(op, m.GetKeyId())
	case *tchsmpb.ManifestPush:
		return n.controlPush(op, m)
	default:
		return n.permanent(op.Sender.ID, "other", fmt.Sprintf("%v does not belong on the control queue", op.Type))
	}
}

// deliver checks and stores a key share delivery.
func (n *node) deliver(op *trust.Opened, d *tchsmpb.KeyShareDelivery) error {
	const kind = "key_share_delivery"
	if op.Sender.Role != trust.RoleDealer {
		return n.permanent(op.Sender.ID, kind, "sender is not a dealer")
	}
	if d.GetRecipient() != n.id.ID {
		return n.permanent(op.Sender.ID, kind, fmt.Sprintf("share addressed to %.64q", d.GetRecipient()))
	}
	rec, err := trust.VerifyKeyRecord(n.manifest(), d.GetSignedRecord())
	if err != nil {
		return n.permanent(op.Sender.ID, kind, err.Error())
	}
	id := rec.GetKeyId()
	if int(rec.GetN()) != n.manifest().N() {
		return n.permanent(op.Sender.ID, kind, fmt.Sprintf("key %s: n=%d but the manifest has %d nodes", id, rec.GetN(), n.manifest().N()))
	}
	if dead, err := n.store.Deleted(id); err != nil {
		n.metrics.control.WithLabelValues(kind, "retry").Inc()
		return err
	} else if dead {
		n.log.Info("share delivery for a deleted key ignored", "key", id, "sender", op.Sender.ID)
		n.metrics.control.WithLabelValues(kind, "deleted").Inc()
		return nil
	}
	sch, pk, err := store.PublicKey(rec)
	if err != nil {
		return n.permanent(op.Sender.ID, kind, fmt.Sprintf("key %s: %v", id, err))
	}
	ps, err := trust.DecryptShare(n.id, n.manifest().ClusterID, id, d.GetEnc(), d.GetCiphertext())
	if err != nil {
		return n.permanent(op.Sender.ID, kind, fmt.Sprintf("key %s: %v", id, err))
	}
	switch {
	case ps.GetKeyId() != id:
		return n.permanent(op.Sender.ID, kind, fmt.Sprintf("key %s: share is for another key", id))
	case int(ps.GetIndex()) != n.self.Index:
		return n.permanent(op.Sender.ID, kind, fmt.Sprintf("key %s: share index %d, ours is %d", id, ps.GetIndex(), n.self.Index))
	}
	share, err := sch.ParseShare(pk, int(ps.GetIndex()), ps.GetS())
	clear(ps.S)
	if err != nil {
		return n.permanent(op.Sender.ID, kind, fmt.Sprintf("key %s: share of %d bytes: %v", id, len(ps.GetS()), err))
	}
	defer share.Wipe()
	if err := sch.CheckShare(pk, share); err != nil {
		return n.permanent(op.Sender.ID, kind, fmt.Sprintf("key %s: share does not match its verification key", id))
	}
	if stored, err := n.storeShare(op, kind, "share delivery", d.GetSignedRecord(), rec, share); !stored {
		return err
	}
	n.log.Info("key share stored", "key", id, "label", rec.GetLabel(), "algorithm", scheme.Of(rec).String(), "bits", rec.GetBits(), "k", rec.GetK(), "n", rec.GetN(), "dealer", op.Sender.ID)
	return nil
}

// deleteKey obeys a DeleteKey from the dealer: the key is hidden at once, its share kept in the
// store's trash for the grace period. It returns until when the share is kept (zero when the
// node held none, or the deletion was stale).
func (n *node) deleteKey(op *trust.Opened, id string) (time.Time, error) {
	d, err := n.store.Delete(id, op.IssuedAt)
	if err != nil {
		return time.Time{}, err
	}
	n.metrics.keys.Set(float64(n.store.Len()))
	if d.Stale {
		n.log.Warn("DeleteKey issued before the key's latest restore ignored", "key", id, "by", op.Sender.ID)
		return time.Time{}, nil
	}
	var until time.Time
	if d.Held {
		until = d.At.Add(n.cfg.Grace())
	}
	lvl := slog.LevelInfo
	if d.Again {
		lvl = slog.LevelDebug
	}
	n.log.Log(context.Background(), lvl, "key deleted", "key", id, "by", op.Sender.ID, "held", d.Held, "again", d.Again, "recoverable_until", until)
	return until, nil
}

// restore obeys a RestoreKey from the dealer (a control message: the dealer waits for the key
// to be listed again). A key this node cannot restore is logged, not dead-lettered.
func (n *node) restore(op *trust.Opened, id string) error {
	const kind = "restore_key"
	if op.Sender.Role != trust.RoleDealer {
		return n.permanent(op.Sender.ID, kind, "only the dealer restores keys")
	}
	if !trust.ValidKeyID(id) {
		return n.permanent(op.Sender.ID, kind, "bad key id")
	}
	_, err := n.store.Restore(id, op.IssuedAt, time.Now().Add(-n.cfg.Grace()))
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrPurged), errors.Is(err, store.ErrStale):
		n.log.Warn("key not restored", "key", id, "by", op.Sender.ID, "reason", err.Error())
		n.metrics.control.WithLabelValues(kind, "refused").Inc()
		return nil
	case errors.Is(err, store.ErrCorrupt), errors.Is(err, store.ErrInvalid):
		return n.permanent(op.Sender.ID, kind, err.Error())
	case err != nil:
		n.log.Error("store failure on restore; will retry", "key", id, "err", err)
		n.metrics.control.WithLabelValues(kind, "retry").Inc()
		return err
	}
	n.metrics.keys.Set(float64(n.store.Len()))
	n.metrics.control.WithLabelValues(kind, "ok").Inc()
	n.log.Info("key restored", "key", id, "by", op.Sender.ID)
	return nil
}

// purgeLoop removes from the store the shares of keys deleted longer than the grace period
// ago: once at start, then every purgeEvery, until ctx ends.
func (n *node) purgeLoop(ctx context.Context) {
	every := min(time.Hour, max(n.cfg.Grace()/4, time.Second))
	for {
		ids, err := n.store.Purge(time.Now().Add(-n.cfg.Grace()))
		if err != nil && !errors.Is(err, store.ErrClosed) {
			n.log.Error("purging deleted keys", "err", err)
		}
		for _, id := range ids {
			n.log.Info("deleted key purged (grace period over)", "key", id)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// storeShare stores a share that arrived on the control queue (what, for the log: "share
// delivery", "late deals") and counts the outcome. stored is false when the caller must return
// err at once: nil for a key deleted meanwhile (ignored), transport.ErrPermanent for a
// conflicting or invalid one, the store's error to retry the message.
func (n *node) storeShare(op *trust.Opened, kind, what string, signed *tchsmpb.SignedKeyRecord, rec *tchsmpb.KeyRecord, share scheme.SecretShare) (stored bool, err error) {
	id := rec.GetKeyId()
	switch err := n.store.Put(signed, rec, share); {
	case errors.Is(err, store.ErrDeleted):
		n.log.Info(what+" for a deleted key ignored", "key", id, "sender", op.Sender.ID)
		n.metrics.control.WithLabelValues(kind, "deleted").Inc()
		return false, nil
	case errors.Is(err, store.ErrConflict):
		return false, n.permanent(op.Sender.ID, kind, fmt.Sprintf("key %s: a different share is already stored", id))
	case errors.Is(err, store.ErrInvalid):
		return false, n.permanent(op.Sender.ID, kind, err.Error())
	case err != nil:
		n.log.Error("store failure; the "+what+" will be retried", "key", id, "err", err)
		n.metrics.control.WithLabelValues(kind, "retry").Inc()
		return false, err
	}
	n.metrics.keys.Set(float64(n.store.Len()))
	n.metrics.control.WithLabelValues(kind, "ok").Inc()
	return true, nil
}
