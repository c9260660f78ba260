// Package rpc is the one request/answer path between tchsm's roles: a caller seals a request
// for one member of the manifest (internal/trust), sends it over a transport.Transport and
// opens the answer, which must come from that member and answer that request; a server opens
// requests, hands them to its role's handler and seals the answers. Nodes and the dealer serve
// through [Server]; the client and the dealer call through [Caller].
//
// Errors travel two ways. A request that does not open (forged, replayed, expired, from a
// stranger) cannot be answered with a sealed message — the server cannot know whom it would
// be talking to — so it gets a plain transport error naming only the category ([ErrRejected]
// and a trust sentinel). A request that opens but fails is answered with a sealed Error body
// (a [*Failure] on the server's side), which the caller receives as an [*Error].
package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tchsm/tchsm/internal/backend"
	"github.com/tchsm/tchsm/internal/protocol"
	"github.com/tchsm/tchsm/internal/transport"
	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
)

// ErrRejected is the error (sent back as a plain transport error) for requests that do not open.
var ErrRejected = errors.New("request rejected")

// ErrWrongAnswer: the answer came from another member than the one asked, or answers another
// request.
var ErrWrongAnswer = errors.New("rpc: answer from another member or to another request")

// Error is a sealed Error body a member answered with.
type Error struct {
	Peer    string // the member that answered
	Code    tchsmpb.Error_Code
	Message string
	KeyID   string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %v: %s", e.Peer, e.Code, e.Message)
}

// Is maps the codes a Backend caller acts on to the backend errors: UNKNOWN_KEY is
// backend.ErrKeyNotFound, BAD_REQUEST is backend.ErrInvalidInput, UNAUTHORIZED is
// backend.ErrUnauthorized, POLICY_REFUSED is backend.ErrPolicyRefused, NOT_LOGGED_IN is
// backend.ErrNotLoggedIn, PIN_LOCKED is backend.ErrPINLocked.
func (e *Error) Is(target error) bool {
	return target == backend.ErrKeyNotFound && e.Code == tchsmpb.Error_UNKNOWN_KEY ||
		target == backend.ErrInvalidInput && e.Code == tchsmpb.Error_BAD_REQUEST ||
		target == backend.ErrUnauthorized && e.Code == tchsmpb.Error_UNAUTHORIZED ||
		target == backend.ErrPolicyRefused && e.Code == tchsmpb.Error_POLICY_REFUSED ||
		target == backend.ErrNotLoggedIn && e.Code == tchsmpb.Error_NOT_LOGGED_IN ||
		target == backend.ErrPINLocked && e.Code == tchsmpb.Error_PIN_LOCKED
}

// Caller sends requests as one identity.
type Caller struct {
	Sealer *trust.Sealer
	// Opener must hold the caller's identity (trust.WithIdentity): requests carry a pair MAC
	// for their recipient (trust.Sealer.SealTo), and so do the answers.
	Opener *trust.Opener
	// Transport returns the transport to send on, waiting for it until ctx ends.
	Transport func(ctx context.Context) (transport.Transport, error)
}

// Call seals body for member to, sends it to address at, and opens the answer. ctx must have
// a deadline: it bounds the request's lifetime too. A sealed Error answer is returned as the
// opened message and an *Error.
func (c *Caller) Call(ctx context.Context, to trust.Member, at transport.Address, body proto.Message) (*trust.Opened, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		return nil, transport.ErrNoDeadline
	}
	ttl := time.Until(dl)
	if ttl <= 0 {
		return nil, context.DeadlineExceeded
	}
	// A request lives at most its type's limit (trust.MaxTTLFor: 30 s for most), even when the
	// caller waits longer: the server drops it then, and the caller's hedging asks another.
	// A WithTickets lives at most its inner type's limit: the dealer refuses it otherwise.
	bt := tchsmpb.BodyTypeOf(body)
	limit := trust.MaxTTLFor(bt)
	if w, ok := body.(*tchsmpb.WithTickets); ok {
		limit = min(limit, trust.MaxTTLFor(w.GetType()))
	}
	raw, msgID, err := c.Sealer.SealTo(to, bt, body, min(ttl, limit))
	if err != nil {
		return nil, err
	}
	tr, err := c.Transport(ctx)
	if err != nil {
		return nil, err
	}
	rep, err := tr.Call(ctx, at, raw)
	if err != nil {
		return nil, err
	}
	op, err := c.Opener.Open(rep)
	if err != nil {
		return nil, fmt.Errorf("rpc: answer from %s rejected: %w", to.ID, err)
	}
	if op.Sender.ID != to.ID || string(op.InReplyTo) != string(msgID) {
		return nil, fmt.Errorf("%w: from %s, asked %s", ErrWrongAnswer, op.Sender.ID, to.ID)
	}
	if e, ok := op.Message.(*tchsmpb.Error); ok {
		return op, &Error{Peer: to.ID, Code: e.GetCode(), Message: e.GetMessage(), KeyID: e.GetKeyId()}
	}
	return op, nil
}

// Failure is a request that opened but failed: it is answered with a sealed Error body. The
// message goes to the caller; keep secrets out of it.
type Failure struct {
	Code  tchsmpb.Error_Code
	Msg   string
	KeyID string
}

func (f *Failure) Error() string { return fmt.Sprintf("%v: %s", f.Code, f.Msg) }

// Fail returns a Failure with a formatted message.
func Fail(code tchsmpb.Error_Code, keyID, format string, args ...any) *Failure {
	return &Failure{Code: code, KeyID: keyID, Msg: fmt.Sprintf(format, args...)}
}

// Unsupported is the Failure that answers a request of a body type this release does not know
// (or a wrapper carrying one): UNSUPPORTED_BODY_TYPE, naming the protocol this release speaks.
func Unsupported(bt tchsmpb.BodyType) *Failure {
	return Fail(tchsmpb.Error_UNSUPPORTED_BODY_TYPE, "", "body type %d is not known to this release (protocol %d, oldest served %d)", int32(bt), protocol.Current, protocol.Min)
}

// IsUnsupported reports whether err says that the peer does not know the message it was sent:
// UNSUPPORTED_BODY_TYPE or UNSUPPORTED_VERSION from a peer of protocol 2 or later, or the
// refusals of releases before them (a plain rejection as unauthorised for a type their table
// lacks, or BAD_REQUEST for one they know but do not serve, or do not take under a login).
// The caller sends the older message instead.
func IsUnsupported(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		switch e.Code {
		case tchsmpb.Error_UNSUPPORTED_BODY_TYPE, tchsmpb.Error_UNSUPPORTED_VERSION:
			return true
		case tchsmpb.Error_BAD_REQUEST:
			return strings.Contains(e.Message, "is not served on the rpc queue") || strings.Contains(e.Message, "is not sent under a login")
		}
		return false
	}
	return err != nil && strings.Contains(err.Error(), ErrRejected.Error()) && strings.Contains(err.Error(), trust.ErrUnauthorized.Error())
}

// Handler serves one opened request: an answer body, or a Failure.
type Handler func(ctx context.Context, op *trust.Opened) (proto.Message, *Failure)

// Server answers the requests sent to one role.
type Server struct {
	Opener *trust.Opener
	Sealer *trust.Sealer
	Log    *slog.Logger
	Handle Handler
	// Done, when set, is told how every request ended: typ is the body type in lower case
	// ("sign_request"), or "rejected" for a request that did not open (op and f are then nil);
	// f is the Failure a request was answered with, nil for an answer. Roles count and log
	// failures there.
	Done func(op *trust.Opened, typ string, f *Failure)
	// Unwrap, when set, sees every request that opened before anything else: it returns the
	// request to serve (nodes: the one a LoggedIn wrapper carries, with its own type, so that
	// Permits, Handle, Done and the metrics see that type), or a Failure that answers it (a
	// request that needs a login and came without one).
	Unwrap func(op *trust.Opened) (*trust.Opened, *Failure)

	rejects LogLimit
}

// LogLimit bounds the log lines of rejected requests: a flood of forged or replayed messages
// must not fill the disk. At most rejectBurst lines per rejectEvery; the ones not logged are
// counted, and the next line logged says how many (not_logged_before). Nodes use one for their
// policy refusals too. The zero value is ready for use.
type LogLimit struct {
	mu      sync.Mutex
	window  time.Time
	logged  int
	dropped int
}

const (
	rejectBurst = 10
	rejectEvery = time.Second
)

// Allow reports whether a line may be logged now, and how many were not logged before it.
func (r *LogLimit) Allow(now time.Time) (ok bool, dropped int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.window) >= rejectEvery {
		r.window, r.logged = now, 0
	}
	if r.logged >= rejectBurst {
		r.dropped++
		return false, 0
	}
	r.logged++
	dropped, r.dropped = r.dropped, 0
	return true, dropped
}

// TypeName is a body type as metrics and logs name it: "sign_request" for
// BODY_TYPE_SIGN_REQUEST.
func TypeName(bt tchsmpb.BodyType) string {
	return strings.ToLower(strings.TrimPrefix(bt.String(), "BODY_TYPE_"))
}

// Serve is the server's transport.Handler. Nothing in a request may take the server down: a
// panic in Handle is logged and answered with INTERNAL.
func (s *Server) Serve(ctx context.Context, d transport.Delivery) (reply []byte, err error) {
	op, err := s.Opener.Open(d.Body)
	if ue := (*trust.UnsupportedError)(nil); errors.As(err, &ue) {
		// Authentic, from a newer release: told so in a sealed answer, so that it falls back.
		// Done sees the type as "unsupported": metrics labels stay bounded.
		f := Unsupported(ue.Opened.Type)
		s.done(ue.Opened, "unsupported", f)
		return s.seal(ue.Opened, f.Proto())
	}
	if err != nil {
		if ok, dropped := s.rejects.Allow(time.Now()); ok {
			s.Log.Warn("request rejected", "claimed_sender", ClaimedSender(d.Body), "reason", err.Error(), "not_logged_before", dropped)
		}
		s.done(nil, "rejected", nil)
		return nil, fmt.Errorf("%w: %w", ErrRejected, Category(err))
	}
	var f *Failure
	if s.Unwrap != nil {
		if in, uf := s.Unwrap(op); uf != nil {
			f = uf
		} else {
			op = in
		}
	}
	typ := TypeName(op.Type)
	defer func() {
		if r := recover(); r != nil {
			s.Log.Error("panic while serving a request", "sender", op.Sender.ID, "type", typ,
				"panic_type", fmt.Sprintf("%T", r), "stack", string(debug.Stack()))
			f := Fail(tchsmpb.Error_INTERNAL, "", "internal error")
			s.done(op, typ, f)
			reply, err = s.seal(op, f.Proto())
		}
	}()
	var body proto.Message
	switch {
	case f != nil: // Unwrap refused it
	case !trust.Permits(op.Sender, op.Type):
		// Authentic, but the sender's client role does not allow it (trust.Permits): the
		// sender is known, so it is told so in a sealed answer.
		f = Fail(tchsmpb.Error_UNAUTHORIZED, "", "%s is a %s client; %v needs an %s client", op.Sender.ID, op.Sender.ClientRole.Effective(), op.Type, trust.ClientRoleAdmin)
	case ctx.Err() != nil:
		f = Fail(tchsmpb.Error_EXPIRED, "", "deadline passed before the request was served")
	default:
		body, f = s.Handle(ctx, op)
	}
	s.done(op, typ, f)
	if f != nil {
		return s.seal(op, f.Proto())
	}
	return s.seal(op, body)
}

func (s *Server) done(op *trust.Opened, typ string, f *Failure) {
	if s.Done != nil {
		s.Done(op, typ, f)
	}
}

// Proto is the Error body that answers f.
func (f *Failure) Proto() *tchsmpb.Error {
	return &tchsmpb.Error{Code: f.Code, Message: f.Msg, KeyId: f.KeyID}
}

func (s *Server) seal(op *trust.Opened, body proto.Message) ([]byte, error) {
	out, err := s.Sealer.Reply(op, tchsmpb.BodyTypeOf(body), body, ReplyTTL(op))
	if err != nil {
		s.Log.Error("sealing an answer", "err", err)
		return nil, errors.New("internal error")
	}
	return out, nil
}

// ReplyTTL is how long an answer to op stays valid: until op's deadline, at least a second
// (clock skew) and at most trust.DefaultMaxTTL.
func ReplyTTL(op *trust.Opened) time.Duration {
	return min(max(time.Until(op.Deadline), time.Second), trust.DefaultMaxTTL)
}

// categories are what a rejected request is told about its rejection.
var categories = []error{trust.ErrMalformed, trust.ErrWrongCluster, trust.ErrUnknownSender, trust.ErrBadSignature,
	trust.ErrUnauthorized, trust.ErrExpired, trust.ErrReplay, trust.ErrReplayCacheFull, trust.ErrUnsupportedVersion}

// Category returns the trust sentinel err wraps (ErrMalformed when none): a rejected request
// learns why, not the details.
func Category(err error) error {
	for _, c := range categories {
		if errors.Is(err, c) {
			return c
		}
	}
	return trust.ErrMalformed
}

// ClaimedSender returns the sender an envelope claims to come from, for logs only.
func ClaimedSender(raw []byte) string {
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
