package dealer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/protocol"
	"github.com/tchsm/tchsm/internal/rpc"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/transport/rabbitmq"
	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
)

// serveWorkers is how many requests the dealer service handles at once. Key generation keeps
// every core busy by itself; two lets a HealthRequest through while a key is being generated.
const serveWorkers = 2

// Serve answers clients on the dealer's rpc queue until ctx ends (it then returns nil):
// GenerateKeyRequest -> GenerateKeyResponse, DeleteKey -> DeleteKeyAck, RestoreKey ->
// RestoreKeyAck, DKGLateDeals -> DKGLateDealsAck (QueueLateDeals), HealthRequest -> Health,
// ManifestPush -> ManifestState (applied, then queued for every node: manifest.go),
// ManifestFetch -> ManifestChain, ListKeys -> Error BAD_REQUEST (ask the nodes). Only clients of the manifest are served, and
// rpc.Server answers what trust.Permits refuses by client role (generation, deletion, restore
// and late deals need an admin) with Error UNAUTHORIZED. Requests that do not open are logged
// and answered with a plain transport error, as on the nodes.
//
// The requests that change keys (trust.NeedsTickets: generation, deletion, restore, late deals)
// are served only in a WithTickets wrapper with the login tickets of at least k distinct nodes
// for the sender (unwrap): the dealer holds no PINs and asks for the login the nodes ask for.
// Bare, or with fewer valid tickets, they are answered with Error NOT_LOGGED_IN.
//
// A GenerateKeyResponse is sent whatever the number of acknowledgements: the client checks that
// at least k nodes acknowledged. Fewer than k shares queued is answered with Error
// NOT_ENOUGH_NODES.
func (d *Dealer) Serve(ctx context.Context) error {
	d.log.Info("dealer service started", "cluster", d.manifest().ClusterID, "manifest", d.manifest().Fingerprint(), "version", d.opts.Version)
	srv := &rpc.Server{Opener: d.opener, Sealer: d.sealer, Log: d.log, Handle: d.handle, Done: d.requestDone, Unwrap: d.unwrap}
	err := d.conn.Serve(ctx, transport.Dealer, serveWorkers, srv.Serve)
	d.log.Info("dealer service stopped")
	if errors.Is(err, transport.ErrClosed) && ctx.Err() != nil {
		return nil
	}
	return err
}

// Run dials the broker and serves until ctx ends: `tchsm dealer --config FILE`.
func Run(ctx context.Context, cfg *config.Dealer, opts Options) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	m, err := trust.LoadManifest(cfg.Manifest)
	if err != nil {
		return err
	}
	tc, err := rabbitmq.FromConfig(cfg.AMQP, m.ClusterID, "tchsm-dealer")
	if err != nil {
		return err
	}
	tc.Logger = opts.Logger
	conn, err := rabbitmq.Open(ctx, tc)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("dealer: %w", err)
	}
	defer conn.Close()
	d, err := New(cfg, conn, opts)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Serve(ctx)
}

// unwrap is the rpc server's Unwrap: it opens WithTickets wrappers, checks their tickets
// (trust.CheckTickets: k + 1 Ed25519 verifications) and refuses with NOT_LOGGED_IN the requests
// that change keys and came without k valid tickets. A cluster whose nodes hold no PIN for a
// client is served as before: its nodes sign NO_VERIFIER tickets, which count here, so that the
// dealer never asks for more (or less) than the nodes do, and needs no setting for it.
func (d *Dealer) unwrap(op *trust.Opened) (*trust.Opened, *rpc.Failure) {
	if op.Sender.Role != trust.RoleClient {
		return op, nil
	}
	if op.Type != tchsmpb.BodyType_BODY_TYPE_WITH_TICKETS {
		if trust.NeedsTickets(op.Type) && trust.Permits(op.Sender, op.Type) {
			return nil, rpc.Fail(tchsmpb.Error_NOT_LOGGED_IN, "", "%v needs the login tickets of %d nodes (log in: C_Login, or the PIN for the tchsm command; a client of an older release must be upgraded)", op.Type, d.manifest().Threshold)
		}
		return op, nil // the rpc server refuses what the client's role may not send
	}
	w := op.Message.(*tchsmpb.WithTickets)
	inner := w.GetType()
	if !tchsmpb.KnownBodyType(inner) {
		return nil, rpc.Unsupported(inner)
	}
	if !trust.NeedsTickets(inner) {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "%v is not sent with tickets", inner)
	}
	if op.Deadline.Sub(op.IssuedAt) > trust.MaxTTLFor(inner) {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "a %v lives at most %v", inner, trust.MaxTTLFor(inner))
	}
	msg, err := tchsmpb.NewBody(inner)
	if err != nil {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "%v", err)
	}
	if err := proto.Unmarshal(w.GetBody(), msg); err != nil {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "the ticketed request is not a %v", inner)
	}
	out := *op
	out.Type, out.Body, out.Message = inner, w.GetBody(), msg
	if !trust.Permits(op.Sender, inner) {
		return &out, nil // refused by the rpc server as UNAUTHORIZED, before any signature check
	}
	if _, err := trust.CheckTickets(d.manifest(), op.Sender.ID, w, time.Now()); err != nil {
		return nil, rpc.Fail(tchsmpb.Error_NOT_LOGGED_IN, "", "%v refused: %v; log in again", inner, err)
	}
	return &out, nil
}

// handle serves one opened request of a client (rpc.Server.Handle).
func (d *Dealer) handle(ctx context.Context, op *trust.Opened) (proto.Message, *rpc.Failure) {
	if op.Sender.Role != trust.RoleClient {
		d.log.Warn("request from a non-client refused", "sender", op.Sender.ID, "type", op.Type.String())
		return nil, rpc.Fail(tchsmpb.Error_UNAUTHORIZED, "", "the dealer serves clients only")
	}
	switch m := op.Message.(type) {
	case *tchsmpb.GenerateKeyRequest:
		return d.serveGenerate(ctx, op, m)
	case *tchsmpb.DeleteKey:
		keyID := m.GetKeyId()
		if !trust.ValidKeyID(keyID) {
			return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "bad key id")
		}
		_, missing, until, err := d.DeleteKey(ctx, keyID)
		if err != nil {
			return nil, rpc.Fail(tchsmpb.Error_UNAVAILABLE, keyID, "DeleteKey could not be queued for every node")
		}
		ack := &tchsmpb.DeleteKeyAck{KeyId: keyID, Node: d.id.ID, Ok: true}
		if !until.IsZero() {
			ack.RecoverableUntil = until.Unix()
		}
		if len(missing) > 0 {
			ack.Error = "queued; not yet confirmed by " + strings.Join(missing, ", ")
		}
		return ack, nil
	case *tchsmpb.RestoreKey:
		keyID := m.GetKeyId()
		if !trust.ValidKeyID(keyID) {
			return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "bad key id")
		}
		d.log.Info("key restore requested", "by", op.Sender.ID, "key", keyID)
		// Fewer than k restored is answered too: the client tells how many.
		restored, missing, err := d.RestoreKey(ctx, keyID)
		if err != nil && !errors.Is(err, ErrNotEnoughNodes) {
			return nil, rpc.Fail(tchsmpb.Error_UNAVAILABLE, keyID, "RestoreKey could not be queued")
		}
		return &tchsmpb.RestoreKeyAck{KeyId: keyID, Restored: restored, Missing: missing}, nil
	case *tchsmpb.DKGLateDeals:
		queued, err := d.QueueLateDeals(ctx, m)
		switch {
		case errors.Is(err, ErrInvalid):
			return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "%s", err.Error())
		case err != nil:
			d.log.Warn("late deals not queued", "to", m.GetRecipient(), "err", err)
			return nil, rpc.Fail(tchsmpb.Error_UNAVAILABLE, "", "late deals could not be queued")
		}
		return &tchsmpb.DKGLateDealsAck{Queued: queued}, nil
	case *tchsmpb.HealthRequest:
		cur := d.manifest()
		h := &tchsmpb.Health{Node: d.id.ID, Version: d.opts.Version, UptimeNanos: int64(time.Since(d.started)),
			ManifestSerial: cur.Serial, ManifestHash: cur.Hash()}
		protocol.Advertise(h, protocol.DealerFeatures)
		return h, nil
	case *tchsmpb.ManifestPush:
		return d.servePush(ctx, op, m)
	case *tchsmpb.ManifestFetch:
		return rpc.ManifestChain(d.id.ID, d.trusted, m)
	}
	return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "the dealer does not serve %v", op.Type)
}

// requestDone logs the requests that failed (rpc.Server.Done).
func (d *Dealer) requestDone(op *trust.Opened, typ string, f *rpc.Failure) {
	if op != nil && f != nil {
		d.log.Info("request failed", "sender", op.Sender.ID, "type", typ, "code", f.Code.String(), "reason", f.Msg)
	}
}

func (d *Dealer) serveGenerate(ctx context.Context, op *trust.Opened, req *tchsmpb.GenerateKeyRequest) (proto.Message, *rpc.Failure) {
	bits := int(req.GetBits())
	if bits < 1024 || bits > MaxServeBits || bits%2 != 0 {
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "modulus of %d bits (1024 to %d, even)", bits, MaxServeBits)
	}
	d.log.Info("key requested", "by", op.Sender.ID, "bits", bits, "label", req.GetLabel())
	rec, acked, missing, err := d.GenerateKey(ctx, bits, int(req.GetPublicExponent()), req.GetLabel(), req.GetP11Id())
	switch {
	case errors.Is(err, ErrInvalid):
		return nil, rpc.Fail(tchsmpb.Error_BAD_REQUEST, "", "%s", err.Error())
	case errors.Is(err, ErrNotEnoughNodes):
		return nil, rpc.Fail(tchsmpb.Error_NOT_ENOUGH_NODES, "", "%s", err.Error())
	case ctx.Err() != nil:
		return nil, rpc.Fail(tchsmpb.Error_EXPIRED, "", "deadline passed during key generation")
	case err != nil:
		d.log.Error("key generation failed", "err", err)
		return nil, rpc.Fail(tchsmpb.Error_INTERNAL, "", "key generation failed")
	}
	return &tchsmpb.GenerateKeyResponse{Record: rec, Acknowledged: acked, Missing: missing}, nil
}
