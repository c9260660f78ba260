package trust

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"regexp"

	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/schemes"
	"google.golang.org/protobuf/proto"
)

const (
	recordDomain      = "tchsm/v1/key-record"
	endorsementDomain = "tchsm/v1/dkg-key-record"
)

// Limits on key records (structural sanity; each scheme checks its own parameters).
const (
	MaxLabelLen  = 256
	MaxP11IDLen  = 256
	maxRecordLen = 1 << 20
)

// ErrBadRecord wraps every key record verification failure.
var ErrBadRecord = errors.New("trust: bad key record")

var keyIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// ValidKeyID reports whether s is a well-formed cluster key id (32 lowercase hex characters):
// keyIDPattern, checked byte by byte (it runs on every request; the regexp cost a few percent of
// a signing client's CPU).
func ValidKeyID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func recordSigningInput(dealer string, record []byte) []byte {
	b := appendLPString(nil, recordDomain)
	b = appendLPString(b, dealer)
	return appendLP(b, record)
}

// SignKeyRecord checks rec's structure, serialises it and signs it as dealer.
func SignKeyRecord(dealer *Identity, rec *tchsmpb.KeyRecord) (*tchsmpb.SignedKeyRecord, error) {
	if err := dealer.check(); err != nil {
		return nil, err
	}
	if dealer.Role != RoleDealer {
		return nil, fmt.Errorf("%w: %s is a %s, not a dealer", ErrUnauthorized, dealer.ID, dealer.Role)
	}
	if err := CheckKeyRecord(rec); err != nil {
		return nil, err
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("trust: encoding key record: %w", err)
	}
	return &tchsmpb.SignedKeyRecord{
		Record:    b,
		Dealer:    dealer.ID,
		Signature: ed25519.Sign(dealer.SignKey, recordSigningInput(dealer.ID, b)),
	}, nil
}

func endorsementInput(node string, record []byte) []byte {
	b := appendLPString(nil, endorsementDomain)
	b = appendLPString(b, node)
	return appendLP(b, record)
}

// EndorseKeyRecord checks rec's structure, serialises it and signs it as node, one of the nodes
// that generated the key together (a distributed key generation has no dealer to sign its
// record). It returns the record's bytes and the endorsement.
func EndorseKeyRecord(node *Identity, rec *tchsmpb.KeyRecord) ([]byte, *tchsmpb.KeyEndorsement, error) {
	if err := node.check(); err != nil {
		return nil, nil, err
	}
	if node.Role != RoleNode {
		return nil, nil, fmt.Errorf("%w: %s is a %s, not a node", ErrUnauthorized, node.ID, node.Role)
	}
	if err := CheckKeyRecord(rec); err != nil {
		return nil, nil, err
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
	if err != nil {
		return nil, nil, fmt.Errorf("trust: encoding key record: %w", err)
	}
	return b, EndorseRecordBytes(node, b), nil
}

// EndorseRecordBytes signs serialised record bytes as node (EndorseKeyRecord without the
// checks, for a record this node built and checked itself).
func EndorseRecordBytes(node *Identity, record []byte) *tchsmpb.KeyEndorsement {
	return &tchsmpb.KeyEndorsement{Node: node.ID, Signature: ed25519.Sign(node.SignKey, endorsementInput(node.ID, record))}
}

// VerifyEndorsement checks one node's endorsement of record bytes.
func VerifyEndorsement(m *Manifest, record []byte, e *tchsmpb.KeyEndorsement) error {
	n, ok := m.Lookup(e.GetNode())
	if !ok {
		return fmt.Errorf("%w: %w: %.64q", ErrBadRecord, ErrUnknownSender, e.GetNode())
	}
	if n.Role != RoleNode {
		return fmt.Errorf("%w: %w: %s is a %s", ErrBadRecord, ErrUnauthorized, n.ID, n.Role)
	}
	if len(e.GetSignature()) != ed25519.SignatureSize || !ed25519.Verify(n.SignPub, endorsementInput(n.ID, record), e.GetSignature()) {
		return fmt.Errorf("%w: %w: endorsement by %s", ErrBadRecord, ErrBadSignature, n.ID)
	}
	return nil
}

// VerifyKeyRecord checks that s was signed by a dealer of m, or endorsed by at least k distinct
// nodes of m (a key the nodes generated together: every endorsement by a node m lists must
// verify; endorsements by identities m no longer lists, a replaced node's, are ignored), for m's
// cluster, and that the record is structurally sound; it returns the decoded record. Since
// fewer than k nodes are assumed corrupt, k endorsements include an honest node's, which
// endorses only the outcome of its own run of the key generation.
func VerifyKeyRecord(m *Manifest, s *tchsmpb.SignedKeyRecord) (*tchsmpb.KeyRecord, error) {
	if s == nil || len(s.Record) == 0 || len(s.Record) > maxRecordLen {
		return nil, fmt.Errorf("%w: missing or oversized", ErrBadRecord)
	}
	if s.Dealer == "" && len(s.Signature) == 0 && len(s.Endorsements) > 0 {
		return verifyEndorsed(m, s, false)
	}
	if len(s.Endorsements) > 0 {
		return nil, fmt.Errorf("%w: a record both dealt and endorsed", ErrBadRecord)
	}
	dealer, ok := m.Lookup(s.Dealer)
	if !ok {
		return nil, fmt.Errorf("%w: %w: %.64q", ErrBadRecord, ErrUnknownSender, s.Dealer)
	}
	if dealer.Role != RoleDealer {
		return nil, fmt.Errorf("%w: %w: %s is a %s", ErrBadRecord, ErrUnauthorized, dealer.ID, dealer.Role)
	}
	if len(s.Signature) != ed25519.SignatureSize || !ed25519.Verify(dealer.SignPub, recordSigningInput(dealer.ID, s.Record), s.Signature) {
		return nil, fmt.Errorf("%w: %w: by %s", ErrBadRecord, ErrBadSignature, dealer.ID)
	}
	rec := new(tchsmpb.KeyRecord)
	if err := proto.Unmarshal(s.Record, rec); err != nil {
		return nil, fmt.Errorf("%w: %w: %v", ErrBadRecord, ErrMalformed, err)
	}
	if rec.ClusterId != m.ClusterID {
		return nil, fmt.Errorf("%w: %w: %.64q", ErrBadRecord, ErrWrongCluster, rec.ClusterId)
	}
	if err := CheckKeyRecord(rec); err != nil {
		return nil, err
	}
	if !Dealt(rec) {
		// No dealer ever holds a generated key: a dealer-signed record of one is forged.
		return nil, fmt.Errorf("%w: a %v key is generated by the nodes, never signed by a dealer", ErrBadRecord, scheme.Of(rec))
	}
	return rec, nil
}

// ErrFewEndorsements wraps ErrBadRecord for a generated key's record whose endorsements by
// nodes of the manifest all verify but number fewer than k, because some of its endorsers were
// replaced since (their identities are no longer listed).
var ErrFewEndorsements = fmt.Errorf("%w: fewer than k endorsements by nodes of the manifest", ErrBadRecord)

// VerifyKeyRecordBeforeReplacement is VerifyKeyRecord, except that it also accepts, with full
// false, the record of a generated key endorsed by fewer than k nodes the manifest lists now
// (at least one; every listed endorsement must verify): one endorsed by k nodes of which some
// were replaced since. Such a record names no key a client may use (one corrupt node could
// make one up); it is what a node stored before the replacement (its store authenticates it),
// and what a resharing starts from, whose outcome needs k endorsements again.
func VerifyKeyRecordBeforeReplacement(m *Manifest, s *tchsmpb.SignedKeyRecord) (rec *tchsmpb.KeyRecord, full bool, err error) {
	rec, err = VerifyKeyRecord(m, s)
	if err == nil || !errors.Is(err, ErrFewEndorsements) {
		return rec, err == nil, err
	}
	rec, err = verifyEndorsed(m, s, true)
	return rec, false, err
}

func verifyEndorsed(m *Manifest, s *tchsmpb.SignedKeyRecord, few bool) (*tchsmpb.KeyRecord, error) {
	if len(s.Endorsements) > MaxNodes {
		return nil, fmt.Errorf("%w: %d endorsements", ErrBadRecord, len(s.Endorsements))
	}
	seen := map[string]bool{}
	valid := 0
	for _, e := range s.Endorsements {
		if seen[e.GetNode()] {
			return nil, fmt.Errorf("%w: two endorsements by %.64q", ErrBadRecord, e.GetNode())
		}
		seen[e.GetNode()] = true
		if _, listed := m.Lookup(e.GetNode()); !listed {
			// A node identity the manifest no longer lists (a replaced node): its endorsement
			// neither counts nor spoils the others'. A listed node's bad endorsement does.
			continue
		}
		if err := VerifyEndorsement(m, s.Record, e); err != nil {
			return nil, err
		}
		valid++
	}
	rec := new(tchsmpb.KeyRecord)
	if err := proto.Unmarshal(s.Record, rec); err != nil {
		return nil, fmt.Errorf("%w: %w: %v", ErrBadRecord, ErrMalformed, err)
	}
	if rec.ClusterId != m.ClusterID {
		return nil, fmt.Errorf("%w: %w: %.64q", ErrBadRecord, ErrWrongCluster, rec.ClusterId)
	}
	if err := CheckKeyRecord(rec); err != nil {
		return nil, err
	}
	if Dealt(rec) {
		return nil, fmt.Errorf("%w: a %v key is made by a dealer, never endorsed", ErrBadRecord, scheme.Of(rec))
	}
	if valid < int(rec.K) && (!few || valid == 0) {
		return nil, fmt.Errorf("%w: %d (of %d), need k=%d", ErrFewEndorsements, valid, len(s.Endorsements), rec.K)
	}
	if int(rec.N) != m.N() {
		return nil, fmt.Errorf("%w: a generated key of n=%d in a cluster of %d nodes", ErrBadRecord, rec.N, m.N())
	}
	return rec, nil
}

// Dealt reports whether a record's scheme makes its keys with a dealer (Shoup RSA), rather than
// by a distributed key generation among the nodes (FROST).
func Dealt(rec *tchsmpb.KeyRecord) bool { return scheme.Of(rec) == scheme.ShoupRSA }

// CheckKeyRecord checks a record's structure: key id, cluster id, sizes, 1 <= k <= n <=
// MaxNodes, and the scheme-specific parameters, which the record's scheme checks and decodes
// (scheme.Scheme.DecodePublic; for RSA: one verification key per node, a modulus of exactly
// Bits bits, an odd exponent > n).
func CheckKeyRecord(rec *tchsmpb.KeyRecord) error {
	_, err := checkKeyRecord(rec)
	return err
}

func checkKeyRecord(rec *tchsmpb.KeyRecord) (scheme.PublicKey, error) {
	if rec == nil {
		return nil, fmt.Errorf("%w: nil", ErrBadRecord)
	}
	if !ValidKeyID(rec.KeyId) {
		return nil, fmt.Errorf("%w: key id %.64q", ErrBadRecord, rec.KeyId)
	}
	if !idPattern.MatchString(rec.ClusterId) {
		return nil, fmt.Errorf("%w: cluster id %.64q", ErrBadRecord, rec.ClusterId)
	}
	if len(rec.Label) > MaxLabelLen || len(rec.P11Id) > MaxP11IDLen {
		return nil, fmt.Errorf("%w: label or CKA_ID too long", ErrBadRecord)
	}
	if rec.N < 1 || rec.N > MaxNodes || rec.K < 1 || rec.K > rec.N {
		return nil, fmt.Errorf("%w: k=%d n=%d", ErrBadRecord, rec.K, rec.N)
	}
	_, pk, err := schemes.DecodePublic(rec)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	if k, n := pk.Threshold(); k != int(rec.K) || n != int(rec.N) {
		return nil, fmt.Errorf("%w: the scheme's k=%d n=%d differ from the record's", ErrBadRecord, k, n)
	}
	return pk, nil
}

// PublicKey builds the public key of a (verified) key record with the record's scheme, and
// validates it. A node signs, and a client combines, only with the public key built here from
// the signed record, never with parameters taken from a request.
func PublicKey(rec *tchsmpb.KeyRecord) (scheme.PublicKey, error) {
	return checkKeyRecord(rec)
}
