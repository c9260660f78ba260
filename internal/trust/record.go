package trust

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/big"
	"regexp"

	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme/shoup"
	"google.golang.org/protobuf/proto"
)

const recordDomain = "tchsm/v1/key-record"

// Limits on key records (structural sanity; the threshold package checks the mathematics).
const (
	MinKeyBits   = 1024
	MaxKeyBits   = 8192
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

// CheckKeyRecord checks a record's structure: key id, cluster id, sizes, 1 <= k <= n <= MaxNodes,
// one verification key per node, a modulus of exactly Bits bits, an odd exponent > n.
func CheckKeyRecord(rec *tchsmpb.KeyRecord) error {
	if rec == nil {
		return fmt.Errorf("%w: nil", ErrBadRecord)
	}
	if !ValidKeyID(rec.KeyId) {
		return fmt.Errorf("%w: key id %.64q", ErrBadRecord, rec.KeyId)
	}
	if !idPattern.MatchString(rec.ClusterId) {
		return fmt.Errorf("%w: cluster id %.64q", ErrBadRecord, rec.ClusterId)
	}
	if len(rec.Label) > MaxLabelLen || len(rec.P11Id) > MaxP11IDLen {
		return fmt.Errorf("%w: label or CKA_ID too long", ErrBadRecord)
	}
	if rec.Bits < MinKeyBits || rec.Bits > MaxKeyBits {
		return fmt.Errorf("%w: %d bits", ErrBadRecord, rec.Bits)
	}
	if rec.N < 1 || rec.N > MaxNodes || rec.K < 1 || rec.K > rec.N {
		return fmt.Errorf("%w: k=%d n=%d", ErrBadRecord, rec.K, rec.N)
	}
	if len(rec.Vk) != int(rec.N) {
		return fmt.Errorf("%w: %d verification keys for n=%d", ErrBadRecord, len(rec.Vk), rec.N)
	}
	nMod := new(big.Int).SetBytes(rec.Modulus)
	if nMod.BitLen() != int(rec.Bits) || nMod.Bit(0) == 0 {
		return fmt.Errorf("%w: modulus is %d bits, record says %d", ErrBadRecord, nMod.BitLen(), rec.Bits)
	}
	if rec.PublicExponent < 3 || rec.PublicExponent%2 == 0 || rec.PublicExponent <= rec.N {
		return fmt.Errorf("%w: public exponent %d", ErrBadRecord, rec.PublicExponent)
	}
	inRange := func(b []byte) bool {
		x := new(big.Int).SetBytes(b)
		return x.Sign() > 0 && x.Cmp(nMod) < 0
	}
	if !inRange(rec.V) {
		return fmt.Errorf("%w: v out of range", ErrBadRecord)
	}
	for i, vk := range rec.Vk {
		if !inRange(vk) {
			return fmt.Errorf("%w: vk[%d] out of range", ErrBadRecord, i)
		}
	}
	return nil
}

// PublicKey builds the threshold public key of a (verified) key record and validates it. A node
// signs, and a client combines, only with the public key built here from the dealer-signed
// record, never with parameters taken from a request.
func PublicKey(rec *tchsmpb.KeyRecord) (*shoup.PublicKey, error) {
	if rec.GetPublicExponent() > 1<<31-1 || rec.GetK() > shoup.MaxPlayers || rec.GetN() > shoup.MaxPlayers {
		return nil, fmt.Errorf("%w: parameters out of range", ErrBadRecord)
	}
	pk := &shoup.PublicKey{
		N: new(big.Int).SetBytes(rec.GetModulus()), E: int(rec.GetPublicExponent()),
		K: int(rec.GetK()), L: int(rec.GetN()), V: new(big.Int).SetBytes(rec.GetV()),
	}
	for _, v := range rec.GetVk() {
		pk.VK = append(pk.VK, new(big.Int).SetBytes(v))
	}
	if err := pk.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	if pk.N.BitLen() != int(rec.GetBits()) {
		return nil, fmt.Errorf("%w: modulus of %d bits, record says %d", ErrBadRecord, pk.N.BitLen(), rec.GetBits())
	}
	return pk, nil
}
