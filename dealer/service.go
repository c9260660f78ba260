package dealer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
)

// serveWorkers is how many requests the dealer service handles at once. Key generation keeps
// every core busy by itself; two lets a HealthRequest through while a key is being generated.
const serveWorkers = 2

// Serve answers clients on the dealer's rpc queue until ctx ends (it then returns nil):
// GenerateKeyRequest -> GenerateKeyResponse, DeleteKey -> DeleteKeyAck, HealthRequest ->
// Health, ListKeys -> Error BAD_REQUEST (ask the nodes). Only clients of the manifest are served
// (trust.Allowed decides which body types; other roles get Error UNAUTHORIZED). Requests that do
// not open are logged and answered with a plain transport error, as on the nodes.
//
// A GenerateKeyResponse is sent whatever the number of acknowledgements: the client checks that
// at least k nodes acknowledged. Fewer than k shares queued is answered with Error
// NOT_ENOUGH_NODES.
func (d *Dealer) Serve(ctx context.Context) error {
	q := d.conn.DealerRPCQueue()
	d.log.Info("dealer service started", "cluster", d.m.ClusterID, "queue", q, "manifest", d.m.Fingerprint(), "version", d.opts.Version)
	err := d.conn.Serve(ctx, q, serveWorkers, d.handle)
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
	tc, err := transport.FromConfig(cfg.AMQP, m.ClusterID, "tchsm-dealer")
	if err != nil {
		return err
	}
	tc.Logger = opts.Logger
	conn, err := transport.Dial(ctx, tc)
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

type reqError struct {
	code tchsmpb.Error_Code
	msg  string
}

func (d *Dealer) handle(ctx context.Context, dl transport.Delivery) (reply []byte, err error) {
	op, err := d.opener.Open(dl.Body)
	if err != nil {
		d.log.Warn("request rejected", "reason", err.Error())
		return nil, fmt.Errorf("dealer: request rejected: %w", rejectCategory(err))
	}
	defer func() {
		if r := recover(); r != nil {
			d.log.Error("panic while serving a request", "sender", op.Sender.ID, "type", op.Type.String(), "panic_type", fmt.Sprintf("%T", r))
			reply, err = d.sealError(op, &reqError{tchsmpb.Error_INTERNAL, "internal error"}, "")
		}
	}()
	if op.Sender.Role != trust.RoleClient {
		d.log.Warn("request from a non-client refused", "sender", op.Sender.ID, "type", op.Type.String())
		return d.sealError(op, &reqError{tchsmpb.Error_UNAUTHORIZED, "the dealer serves clients only"}, "")
	}
	var body proto.Message
	var keyID string
	var rerr *reqError
	switch m := op.Message.(type) {
	case *tchsmpb.GenerateKeyRequest:
		body, keyID, rerr = d.serveGenerate(ctx, op, m)
	case *tchsmpb.DeleteKey:
		keyID = m.GetKeyId()
		if !trust.ValidKeyID(keyID) {
			rerr = &reqError{tchsmpb.Error_BAD_REQUEST, "bad key id"}
			break
		}
		_, missing, err := d.DeleteKey(ctx, keyID)
		if err != nil {
			rerr = &reqError{tchsmpb.Error_UNAVAILABLE, "DeleteKey could not be queued for every node"}
			break
		}
		ack := &tchsmpb.DeleteKeyAck{KeyId: keyID, Node: d.id.ID, Ok: true}
		if len(missing) > 0 {
			ack.Error = "queued; not yet confirmed by " + strings.Join(missing, ", ")
		}
		body = ack
	case *tchsmpb.HealthRequest:
		body = &tchsmpb.Health{Node: d.id.ID, Version: d.opts.Version, UptimeNanos: int64(time.Since(d.started))}
	default:
		rerr = &reqError{tchsmpb.Error_BAD_REQUEST, fmt.Sprintf("the dealer does not serve %v", op.Type)}
	}
	if rerr != nil {
		d.log.Info("request failed", "sender", op.Sender.ID, "type", op.Type.String(), "code", rerr.code.String(), "reason", rerr.msg)
		return d.sealError(op, rerr, keyID)
	}
	out, err := d.sealer.Reply(op, tchsmpb.BodyTypeOf(body), body, replyTTL(op))
	if err != nil {
		d.log.Error("sealing reply", "err", err)
		return nil, fmt.Errorf("dealer: internal error")
	}
	return out, nil
}

func (d *Dealer) serveGenerate(ctx context.Context, op *trust.Opened, req *tchsmpb.GenerateKeyRequest) (proto.Message, string, *reqError) {
	bits := int(req.GetBits())
	if bits < 1024 || bits > MaxServeBits || bits%2 != 0 {
		return nil, "", &reqError{tchsmpb.Error_BAD_REQUEST, fmt.Sprintf("modulus of %d bits (1024 to %d, even)", bits, MaxServeBits)}
	}
	d.log.Info("key requested", "by", op.Sender.ID, "bits", bits, "label", req.GetLabel())
	rec, acked, missing, err := d.GenerateKey(ctx, bits, int(req.GetPublicExponent()), req.GetLabel(), req.GetP11Id())
	switch {
	case errors.Is(err, ErrInvalid):
		return nil, "", &reqError{tchsmpb.Error_BAD_REQUEST, err.Error()}
	case errors.Is(err, ErrNotEnoughNodes):
		return nil, "", &reqError{tchsmpb.Error_NOT_ENOUGH_NODES, err.Error()}
	case ctx.Err() != nil:
		return nil, "", &reqError{tchsmpb.Error_EXPIRED, "deadline passed during key generation"}
	case err != nil:
		d.log.Error("key generation failed", "err", err)
		return nil, "", &reqError{tchsmpb.Error_INTERNAL, "key generation failed"}
	}
	return &tchsmpb.GenerateKeyResponse{Record: rec, Acknowledged: acked, Missing: missing}, "", nil
}

func replyTTL(op *trust.Opened) time.Duration {
	return min(max(time.Until(op.Deadline), time.Second), trust.DefaultMaxTTL)
}

func (d *Dealer) sealError(op *trust.Opened, e *reqError, keyID string) ([]byte, error) {
	out, err := d.sealer.Reply(op, tchsmpb.BodyType_BODY_TYPE_ERROR, &tchsmpb.Error{Code: e.code, Message: e.msg, KeyId: keyID}, replyTTL(op))
	if err != nil {
		d.log.Error("sealing error reply", "err", err)
		return nil, fmt.Errorf("dealer: internal error")
	}
	return out, nil
}

func rejectCategory(err error) error {
	for _, s := range []error{trust.ErrMalformed, trust.ErrWrongCluster, trust.ErrUnknownSender, trust.ErrBadSignature,
		trust.ErrUnauthorized, trust.ErrExpired, trust.ErrReplay, trust.ErrReplayCacheFull} {
		if errors.Is(err, s) {
			return s
		}
	}
	return trust.ErrMalformed
}
