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

const recordDomain = "tchsm/v1/key-record"

// Limits on key records (structural sanity; each scheme checks its own parameters).
const (
	MaxLabelLen  = 256
	MaxP11IDLen  = 256
	maxRecordLen = 1 << 20
)

// ErrBadRecord wraps every key record verification failure.
var ErrBadRecord = errors.New("trust: bad key record")

var keyIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// ValidKeyID reports whether s is a well-formed cluster key id (32 lowercase hex characters).
func ValidKeyID(s string) bool { return keyIDPattern.MatchString(s) }

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

// VerifyKeyRecord checks that s was signed by a dealer of m, for m's cluster, and that the
// record is structurally sound; it returns the decoded record.
func VerifyKeyRecord(m *Manifest, s *tchsmpb.SignedKeyRecord) (*tchsmpb.KeyRecord, error) {
	if s == nil || len(s.Record) == 0 || len(s.Record) > maxRecordLen {
		return nil, fmt.Errorf("%w: missing or oversized", ErrBadRecord)
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
	return rec, nil
}

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
