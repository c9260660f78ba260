package trust

import (
	"container/heap"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	tchsmpb "github.com/tchsm/tchsm/proto"
	"google.golang.org/protobuf/proto"
)

// EnvelopeVersion is the only envelope version this code writes and accepts.
const EnvelopeVersion = 1

// MessageIDSize is the length of Envelope.message_id.
const MessageIDSize = 16

// Defaults for Opener.
const (
	DefaultSkew        = 5 * time.Second  // how far in the future issued_at may be
	DefaultMaxTTL      = 30 * time.Second // longest deadline - issued_at of a request or answer (rpc)
	DurableMaxTTL      = 24 * time.Hour   // for messages that wait in durable queues
	GenerateMaxTTL     = time.Hour        // key generation (safe primes take a while)
	DefaultMaxSize     = 16 << 20         // bytes of a raw envelope
	DefaultReplayQuota = 1 << 16          // ids remembered at once per sender
	envelopeDomain     = "tchsm/v1/envelope"
)

// Sentinel errors of Open; every error it returns wraps exactly one of them.
var (
	ErrMalformed       = errors.New("trust: malformed envelope")
	ErrWrongCluster    = errors.New("trust: envelope for another cluster")
	ErrUnknownSender   = errors.New("trust: sender not in manifest")
	ErrBadSignature    = errors.New("trust: bad envelope signature")
	ErrUnauthorized    = errors.New("trust: sender's role may not send this message")
	ErrExpired         = errors.New("trust: envelope outside its validity window")
	ErrReplay          = errors.New("trust: envelope already seen")
	ErrReplayCacheFull = errors.New("trust: replay cache full")
	// ErrUnsupportedVersion: an envelope version this release does not speak (a newer
	// sender's); it cannot be authenticated, so it gets a plain rejection naming this one.
	ErrUnsupportedVersion = errors.New("trust: unsupported envelope version")
	// ErrUnsupportedBodyType: an authentic envelope whose body type this release does not
	// know (a newer sender's). Open returns it in an *UnsupportedError, which holds what the
	// receiver needs to answer it (UNSUPPORTED_BODY_TYPE).
	ErrUnsupportedBodyType = errors.New("trust: unsupported body type")
)

// UnsupportedError is Open's error for an authentic envelope of a body type this release does
// not know: Opened is the envelope as opened (sender, ids, deadline; Message is nil), so that
// a server can seal its answer.
type UnsupportedError struct {
	Opened *Opened
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("%v %d from %s", ErrUnsupportedBodyType, int32(e.Opened.Type), e.Opened.Sender.ID)
}

func (e *UnsupportedError) Unwrap() error { return ErrUnsupportedBodyType }

// defaultMaxTTL holds the per-type maximum of deadline - issued_at.
var defaultMaxTTL = map[tchsmpb.BodyType]time.Duration{
	tchsmpb.BodyType_BODY_TYPE_KEY_SHARE_DELIVERY:    DurableMaxTTL,
	tchsmpb.BodyType_BODY_TYPE_DELETE_KEY:            DurableMaxTTL,
	tchsmpb.BodyType_BODY_TYPE_DELETE_KEY_ACK:        DurableMaxTTL,
	tchsmpb.BodyType_BODY_TYPE_RESTORE_KEY:           DurableMaxTTL,
	tchsmpb.BodyType_BODY_TYPE_DKG_LATE_DEALS:        DurableMaxTTL,
	tchsmpb.BodyType_BODY_TYPE_MANIFEST_PUSH:         DurableMaxTTL, // the dealer's, in the control queues
	tchsmpb.BodyType_BODY_TYPE_GENERATE_KEY_REQUEST:  GenerateMaxTTL,
	tchsmpb.BodyType_BODY_TYPE_GENERATE_KEY_RESPONSE: GenerateMaxTTL,
	// The longest of what it may carry; the dealer holds the envelope to its inner type's limit.
	tchsmpb.BodyType_BODY_TYPE_WITH_TICKETS: DurableMaxTTL,
}

// MaxTTLFor returns the default maximum lifetime of a message of type bt.
func MaxTTLFor(bt tchsmpb.BodyType) time.Duration {
	if d, ok := defaultMaxTTL[bt]; ok {
		return d
	}
	return DefaultMaxTTL
}

// Seal wraps body (a body message of type bt) in an envelope from id, valid for ttl from now,
// and returns its serialised bytes and its message id (which an answer's in_reply_to carries).
func Seal(id *Identity, clusterID string, bt tchsmpb.BodyType, body proto.Message, ttl time.Duration) (raw, messageID []byte, err error) {
	s := &Sealer{Identity: id, ClusterID: clusterID}
	return s.Seal(bt, body, ttl)
}

// Sealer seals envelopes for one identity in one cluster. Use it through a pointer; it caches
// the pair keys of SealTo.
type Sealer struct {
	Identity  *Identity
	ClusterID string
	Clock     func() time.Time // nil: time.Now

	pairs pairCache
}

// Seal is like the package-level Seal: the envelope is signed, anyone can check it.
func (s *Sealer) Seal(bt tchsmpb.BodyType, body proto.Message, ttl time.Duration) (raw, messageID []byte, err error) {
	return s.seal(bt, body, ttl, nil, nil)
}

// SealTo seals a request that only member to will open: it carries the MAC of the key the two
// share instead of a signature (see mac.go), and only an Opener with to's identity accepts it.
// It also returns the envelope's message id, which the answer's in_reply_to must carry.
func (s *Sealer) SealTo(to Member, bt tchsmpb.BodyType, body proto.Message, ttl time.Duration) (raw, messageID []byte, err error) {
	return s.seal(bt, body, ttl, nil, &to)
}

// Reply seals an answer to req: the envelope's in_reply_to is req's message id, so the answer
// cannot be passed off as the answer to another request. The answer to a request that came
// with a MAC carries a MAC for its sender; the answer to a signed request is signed.
func (s *Sealer) Reply(req *Opened, bt tchsmpb.BodyType, body proto.Message, ttl time.Duration) ([]byte, error) {
	if req == nil || len(req.MessageID) != MessageIDSize {
		return nil, fmt.Errorf("trust: reply to an unopened request")
	}
	var to *Member
	if req.Recipient != "" {
		to = &req.Sender
	}
	out, _, err := s.seal(bt, body, ttl, req.MessageID, to)
	return out, err
}

func (s *Sealer) seal(bt tchsmpb.BodyType, body proto.Message, ttl time.Duration, inReplyTo []byte, to *Member) ([]byte, []byte, error) {
	if err := s.Identity.check(); err != nil {
		return nil, nil, err
	}
	if !validID(s.ClusterID) {
		return nil, nil, fmt.Errorf("trust: seal: bad cluster id %q", s.ClusterID)
	}
	if body == nil || tchsmpb.BodyTypeOf(body) != bt {
		return nil, nil, fmt.Errorf("trust: seal: body %T is not of type %v", body, bt)
	}
	if !Allowed(s.Identity.Role, bt) {
		return nil, nil, fmt.Errorf("%w: %s may not send %v", ErrUnauthorized, s.Identity.Role, bt)
	}
	if ttl <= 0 || ttl > MaxTTLFor(bt) {
		return nil, nil, fmt.Errorf("trust: seal: ttl %v must be positive and at most %v for %v", ttl, MaxTTLFor(bt), bt)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(body)
	if err != nil {
		return nil, nil, fmt.Errorf("trust: seal: encoding body: %w", err)
	}
	now := time.Now
	if s.Clock != nil {
		now = s.Clock
	}
	t := now()
	env := &tchsmpb.Envelope{
		Version:   EnvelopeVersion,
		ClusterId: s.ClusterID,
		Sender:    s.Identity.ID,
		MessageId: make([]byte, MessageIDSize),
		IssuedAt:  t.UnixNano(),
		Deadline:  t.Add(ttl).UnixNano(),
		BodyType:  bt,
		Body:      b,
		InReplyTo: inReplyTo,
	}
	rand.Read(env.MessageId)
	if to != nil {
		key, err := s.pairs.key(s.Identity, *to, s.ClusterID)
		if err != nil {
			return nil, nil, err
		}
		env.Recipient = to.ID
		env.Mac = envelopeMAC(key, env)
	} else {
		env.Signature = ed25519.Sign(s.Identity.SignKey, EnvelopeSigningInput(env))
	}
	out, err := proto.Marshal(env)
	if err != nil {
		return nil, nil, fmt.Errorf("trust: seal: encoding envelope: %w", err)
	}
	return out, env.MessageId, nil
}

// EnvelopeSigningInput is the canonical encoding of every envelope field but the signature: the
// bytes the sender's Ed25519 signature covers. Exported so that tests can build envelopes a
// well-behaved sender would refuse to seal (node/nodetest.Forge) without copying the format.
func EnvelopeSigningInput(e *tchsmpb.Envelope) []byte {
	b := make([]byte, 0, 160+len(e.Body)+len(e.ClusterId)+len(e.Sender))
	b = appendLPString(b, envelopeDomain)
	b = binary.BigEndian.AppendUint32(b, e.Version)
	b = appendLPString(b, e.ClusterId)
	b = appendLPString(b, e.Sender)
	b = appendLP(b, e.MessageId)
	b = binary.BigEndian.AppendUint64(b, uint64(e.IssuedAt))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Deadline))
	b = binary.BigEndian.AppendUint32(b, uint32(e.BodyType))
	b = appendLP(b, e.Body)
	b = appendLP(b, e.InReplyTo)
	return b
}

// Opened is an envelope that passed every check of Open.
type Opened struct {
	Sender    Member
	Type      tchsmpb.BodyType
	Body      []byte        // the serialised body, as signed
	Message   proto.Message // Body decoded into the message type named by Type
	MessageID []byte
	InReplyTo []byte // the request's message id for answers; nil for requests
	// Recipient is the Opener's own id when the envelope came with a pair MAC (SealTo, or the
	// answer to it); "" when it was signed.
	Recipient string
	IssuedAt  time.Time
	Deadline  time.Time
	// LoggedIn is set by a node's rpc.Server Unwrap when the request came in a LoggedIn
	// wrapper whose session and MAC it checked; Open never sets it.
	LoggedIn bool
}

// Opener checks envelopes against a manifest. Create it with NewOpener; it is safe for
// concurrent use.
type Opener struct {
	view    atomic.Pointer[openerView] // the manifest and its members; SetManifest swaps it
	clock   func() time.Time
	skew    time.Duration
	maxTTL  map[tchsmpb.BodyType]time.Duration
	maxSize int
	replay  replayCache
	// notBefore (Unix ns, 0: none) refuses requests and answers issued earlier: a node sets
	// it to its start, so that a request captured before a restart is not served again (the
	// replay cache lives in memory). Durable messages are exempt: they wait for the node.
	notBefore int64
	self      *Identity // nil: envelopes with a MAC are refused
	pairs     pairCache
	// replayMaxSet: WithMaxReplayEntries set replay.max; else it is the default for the
	// members, which SetManifest raises when members are added.
	replayMaxSet bool
}

// openerView is the manifest an Opener checks against, with its members by id.
type openerView struct {
	manifest *Manifest
	members  map[string]Member
}

func newOpenerView(m *Manifest) *openerView {
	v := &openerView{manifest: m, members: make(map[string]Member)}
	for _, list := range [][]Member{m.Nodes, m.Dealers, m.Clients} {
		for _, mem := range list {
			v.members[mem.ID] = mem
		}
	}
	return v
}

// OpenerOption configures an Opener.
type OpenerOption func(*Opener)

// WithClock sets the clock (default time.Now).
func WithClock(now func() time.Time) OpenerOption { return func(o *Opener) { o.clock = now } }

// WithSkew sets how far in the future issued_at may be (default DefaultSkew).
func WithSkew(d time.Duration) OpenerOption { return func(o *Opener) { o.skew = d } }

// WithMaxTTL overrides the maximum deadline - issued_at for one body type.
func WithMaxTTL(bt tchsmpb.BodyType, d time.Duration) OpenerOption {
	return func(o *Opener) { o.maxTTL[bt] = d }
}

// WithMaxSize sets the largest raw envelope accepted (default DefaultMaxSize).
func WithMaxSize(n int) OpenerOption { return func(o *Opener) { o.maxSize = n } }

// WithIdentity lets the Opener accept envelopes addressed to id with a pair MAC (SealTo and
// answers to it). Without it only signed envelopes open.
func WithIdentity(id *Identity) OpenerOption { return func(o *Opener) { o.self = id } }

// WithMaxReplayEntries bounds the replay cache as a whole (default DefaultReplayQuota for every
// member of the manifest).
func WithMaxReplayEntries(n int) OpenerOption {
	return func(o *Opener) { o.replay.max, o.replayMaxSet = n, true }
}

// WithReplayQuota bounds the ids the replay cache remembers for one sender (default
// DefaultReplayQuota): a sender that floods a node is refused alone (ErrReplayCacheFull) while
// the others go on. With DefaultMaxTTL, the default lets one sender send about 2,000 requests
// a second to one node.
func WithReplayQuota(n int) OpenerOption { return func(o *Opener) { o.replay.quota = n } }

// WithNotBefore refuses every envelope issued before t (minus the allowed skew) except durable
// ones (share deliveries, deletions, whose lifetime exceeds DefaultMaxTTL and which wait in
// queues for their reader). A node sets it to its start time.
func WithNotBefore(t time.Time) OpenerOption {
	return func(o *Opener) { o.notBefore = t.UnixNano() }
}

// NewOpener validates m and returns an Opener for it. The manifest must not be modified while
// the Opener is in use.
func NewOpener(m *Manifest, opts ...OpenerOption) (*Opener, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	o := &Opener{
		clock:   time.Now,
		skew:    DefaultSkew,
		maxTTL:  make(map[tchsmpb.BodyType]time.Duration),
		maxSize: DefaultMaxSize,
	}
	o.replay.seen = make(map[replayKey]int64)
	o.replay.perSender = make(map[string]int)
	o.replay.quota = DefaultReplayQuota
	v := newOpenerView(m)
	o.view.Store(v)
	o.replay.max = DefaultReplayQuota * len(v.members)
	for _, opt := range opts {
		opt(o)
	}
	return o, nil
}

// Manifest returns the manifest the Opener checks against now.
func (o *Opener) Manifest() *Manifest { return o.view.Load().manifest }

// SetManifest makes the Opener check against m from now on (an accepted manifest update): a
// member m no longer lists is an unknown sender for every envelope opened afterwards. m must
// be of the same cluster; the replay cache is kept.
func (o *Opener) SetManifest(m *Manifest) error {
	if err := m.Validate(); err != nil {
		return err
	}
	if cur := o.Manifest(); m.ClusterID != cur.ClusterID {
		return fmt.Errorf("%w: manifest of cluster %q for an opener of %q", ErrInvalidManifest, m.ClusterID, cur.ClusterID)
	}
	v := newOpenerView(m)
	o.view.Store(v)
	o.replay.mu.Lock()
	if !o.replayMaxSet {
		o.replay.max = max(o.replay.max, DefaultReplayQuota*len(v.members)) // the default bound follows the members
	}
	o.replay.mu.Unlock()
	return nil
}

func (o *Opener) ttlFor(bt tchsmpb.BodyType) time.Duration {
	if d, ok := o.maxTTL[bt]; ok {
		return d
	}
	return MaxTTLFor(bt)
}

// Open checks raw and returns its contents; see the package documentation for the checks.
func (o *Opener) Open(raw []byte) (*Opened, error) {
	if len(raw) == 0 || len(raw) > o.maxSize {
		return nil, fmt.Errorf("%w: %d bytes (max %d)", ErrMalformed, len(raw), o.maxSize)
	}
	env := new(tchsmpb.Envelope)
	if err := proto.Unmarshal(raw, env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(env.ProtoReflect().GetUnknown()) != 0 {
		return nil, fmt.Errorf("%w: unknown envelope fields", ErrMalformed)
	}
	if env.Version == 0 {
		return nil, fmt.Errorf("%w: no version", ErrMalformed)
	}
	if env.Version != EnvelopeVersion {
		return nil, fmt.Errorf("%w: %d (this release speaks %d)", ErrUnsupportedVersion, env.Version, EnvelopeVersion)
	}
	signed := len(env.Signature) == ed25519.SignatureSize && env.Recipient == "" && len(env.Mac) == 0
	maced := len(env.Signature) == 0 && env.Recipient != "" && len(env.Mac) == macSize
	if len(env.MessageId) != MessageIDSize || !(signed || maced) ||
		(len(env.InReplyTo) != 0 && len(env.InReplyTo) != MessageIDSize) {
		return nil, fmt.Errorf("%w: field lengths", ErrMalformed)
	}
	view := o.view.Load()
	if env.ClusterId != view.manifest.ClusterID {
		return nil, fmt.Errorf("%w: %.64q", ErrWrongCluster, env.ClusterId)
	}
	sender, ok := view.members[env.Sender]
	if !ok {
		return nil, fmt.Errorf("%w: %.64q", ErrUnknownSender, env.Sender)
	}
	if signed && !ed25519.Verify(sender.SignPub, EnvelopeSigningInput(env), env.Signature) {
		return nil, fmt.Errorf("%w: from %s", ErrBadSignature, sender.ID)
	}
	if maced {
		if err := o.checkMAC(sender, env); err != nil {
			return nil, err
		}
	}
	// A body type this release does not know is authentic but from a newer release: it is
	// checked like any other (time, replay) and then answered, not served.
	known := tchsmpb.KnownBodyType(env.BodyType)
	if known && !Allowed(sender.Role, env.BodyType) {
		return nil, fmt.Errorf("%w: %s %s sent %v", ErrUnauthorized, sender.Role, sender.ID, env.BodyType)
	}
	now := o.clock().UnixNano()
	switch {
	case env.IssuedAt > now+int64(o.skew):
		return nil, fmt.Errorf("%w: issued %v in the future", ErrExpired, time.Duration(env.IssuedAt-now))
	case env.Deadline < now:
		return nil, fmt.Errorf("%w: deadline passed %v ago", ErrExpired, time.Duration(now-env.Deadline))
	case env.Deadline < env.IssuedAt:
		return nil, fmt.Errorf("%w: deadline before issue time", ErrExpired)
	// Deadline >= IssuedAt, so the difference fits a uint64 even when int64 would overflow.
	case uint64(env.Deadline)-uint64(env.IssuedAt) > uint64(o.ttlFor(env.BodyType)):
		return nil, fmt.Errorf("%w: lifetime exceeds %v for %v", ErrExpired, o.ttlFor(env.BodyType), env.BodyType)
	case o.notBefore != 0 && o.ttlFor(env.BodyType) <= DefaultMaxTTL && env.IssuedAt < o.notBefore-int64(o.skew):
		return nil, fmt.Errorf("%w: issued %v before this process started", ErrExpired, time.Duration(o.notBefore-env.IssuedAt))
	}
	var msg proto.Message
	if known {
		var err error
		if msg, err = tchsmpb.NewBody(env.BodyType); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		if err := proto.Unmarshal(env.Body, msg); err != nil {
			return nil, fmt.Errorf("%w: %v body: %v", ErrMalformed, env.BodyType, err)
		}
	}
	if err := o.replay.add(replayKey{sender.ID, [MessageIDSize]byte(env.MessageId)}, env.Deadline+int64(o.skew), now); err != nil {
		return nil, err
	}
	op := &Opened{
		Sender:    sender,
		Type:      env.BodyType,
		Body:      env.Body,
		Message:   msg,
		MessageID: env.MessageId,
		InReplyTo: env.InReplyTo,
		Recipient: env.Recipient,
		IssuedAt:  time.Unix(0, env.IssuedAt),
		Deadline:  time.Unix(0, env.Deadline),
	}
	if !known {
		return nil, &UnsupportedError{Opened: op}
	}
	return op, nil
}

// checkMAC verifies a pair MAC: addressed to this Opener's identity, under the key it shares
// with sender.
func (o *Opener) checkMAC(sender Member, env *tchsmpb.Envelope) error {
	if o.self == nil {
		return fmt.Errorf("%w: from %s: MAC-authenticated envelopes are not accepted here", ErrBadSignature, sender.ID)
	}
	if env.Recipient != o.self.ID {
		return fmt.Errorf("%w: from %s: addressed to %.64q", ErrBadSignature, sender.ID, env.Recipient)
	}
	key, err := o.pairs.key(o.self, sender, o.Manifest().ClusterID)
	if err != nil {
		return fmt.Errorf("%w: from %s: %v", ErrBadSignature, sender.ID, err)
	}
	if !hmac.Equal(envelopeMAC(key, env), env.Mac) {
		return fmt.Errorf("%w: from %s: bad MAC", ErrBadSignature, sender.ID)
	}
	return nil
}

// Unmarshal decodes the body into m, which must be of the opened type.
func (op *Opened) Unmarshal(m proto.Message) error {
	if tchsmpb.BodyTypeOf(m) != op.Type {
		return fmt.Errorf("%w: body is %v, not %T", ErrMalformed, op.Type, m)
	}
	if err := proto.Unmarshal(op.Body, m); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

type replayKey struct {
	sender string
	id     [MessageIDSize]byte
}

// replayCache remembers message ids until their expiry (Unix nanoseconds). A min-heap on expiry
// lets add drop expired ids in amortised O(log n).
type replayCache struct {
	mu        sync.Mutex
	max       int // ids at once, in all
	quota     int // ids at once, per sender
	seen      map[replayKey]int64
	perSender map[string]int
	exp       expiryHeap
}

func (c *replayCache) add(k replayKey, expiry, now int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.exp) > 0 && c.exp[0].expiry < now {
		e := heap.Pop(&c.exp).(expiryEntry)
		delete(c.seen, e.key)
		if c.perSender[e.key.sender]--; c.perSender[e.key.sender] <= 0 {
			delete(c.perSender, e.key.sender)
		}
	}
	if _, dup := c.seen[k]; dup {
		return fmt.Errorf("%w: message %x from %s", ErrReplay, k.id, k.sender)
	}
	if c.perSender[k.sender] >= c.quota {
		return fmt.Errorf("%w: %d unexpired ids from %s", ErrReplayCacheFull, c.perSender[k.sender], k.sender)
	}
	if len(c.seen) >= c.max {
		return fmt.Errorf("%w: %d unexpired ids", ErrReplayCacheFull, len(c.seen))
	}
	c.perSender[k.sender]++
	c.seen[k] = expiry
	heap.Push(&c.exp, expiryEntry{k, expiry})
	return nil
}

type expiryEntry struct {
	key    replayKey
	expiry int64
}

type expiryHeap []expiryEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expiry < h[j].expiry }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
