// Package dnspolicy is a signing node's DNSSEC signing policy (issue 15): before a node
// computes its share of a signature, it checks that what it is asked to sign is the signed data
// of an RRSIG (RFC 4034 section 3.1.8.1) that its operator's policy allows — validity period,
// inception and expiration against the node's own clock, signer's name, type covered, the
// RRSIG's algorithm and key tag against the key. Since a signature needs k nodes and each node
// checks on its own, a policy held by at least n−k+1 nodes holds whoever controls the client.
//
// The policy comes from the node's configuration (config.SigningPolicy), never from a request.
// Check is one function for every scheme: it takes the key, the mechanism and the whole message
// (nil when the request carries only a digest) and the node's clock, and returns a Verdict.
// The parser (Parse) is strict and bounded: see its doc.
package dnspolicy

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"math"
	"path"
	"slices"
	"time"

	"github.com/tchsm/tchsm/internal/config"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
)

// Reason names why a request was refused; the values are the nodes' metric labels.
type Reason string

const (
	ReasonDigestOnly Reason = "digest_only" // no message: the node cannot check it
	ReasonSHA1       Reason = "sha1"        // a SHA-1 mechanism (chosen-prefix collisions)
	ReasonMechanism  Reason = "mechanism"   // a mechanism no DNSSEC algorithm of this key uses
	ReasonMalformed  Reason = "malformed"   // not RRSIG RDATA + canonical RRset
	ReasonAlgorithm  Reason = "algorithm"   // the RRSIG's algorithm does not match key and mechanism
	ReasonKeyTag     Reason = "key_tag"     // the RRSIG's key tag is not this key's
	ReasonZone       Reason = "zone"        // signer's name not allowed
	ReasonType       Reason = "type"        // type covered not allowed
	ReasonInverted   Reason = "inverted"    // expiration not after inception
	ReasonValidity   Reason = "validity"    // expiration − inception too long
	ReasonBackdated  Reason = "backdated"   // inception too far before the node's clock
	ReasonAhead      Reason = "ahead"       // expiration too far after the node's clock
)

// Refusal is a request the policy refuses.
type Refusal struct {
	Reason Reason
	Detail string // for the log and the requester; holds no secret
}

func (r *Refusal) Error() string { return fmt.Sprintf("policy: %s: %s", r.Reason, r.Detail) }

func refuse(r Reason, format string, args ...any) *Refusal {
	return &Refusal{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// Mode says how a key's policy applied to a request.
type Mode string

const (
	ModeNone     Mode = "none"     // the key has no policy
	ModeEnforced Mode = "enforced" // the message was checked
	ModeAdvisory Mode = "advisory" // digest-only, let through by allow_digest_only: not checked
)

// Verdict is the outcome of Check. Refusal is nil when the request may be signed.
type Verdict struct {
	Mode    Mode
	Policy  string      // the matching entry, for logs ("default", "keys[2]"); "" without policy
	Signed  *SignedData // the parsed message, when there is one and it parsed
	Refusal *Refusal
}

// Key is what a policy check knows of a key: its dealer-signed record and its public key
// (*rsa.PublicKey for Shoup RSA, ed25519.PublicKey for Ed25519).
type Key struct {
	Record *tchsmpb.KeyRecord
	Public crypto.PublicKey
}

// rule is one compiled KeyPolicy.
type rule struct {
	name                               string
	keyID, label                       string
	off, digestOnly                    bool
	maxValidity, maxBackdate, maxAhead int64 // seconds
	zones                              [][]byte
	types                              []uint16
}

// Set is a node's compiled policy. The zero Set and a nil *Set have no policy for any key.
type Set struct {
	keys []rule
	def  *rule
}

// Compile checks and compiles a node's signing policy (nil: none).
func Compile(sp *config.SigningPolicy) (*Set, error) {
	s := &Set{}
	if sp == nil {
		return s, nil
	}
	if err := sp.Validate(); err != nil {
		return nil, err
	}
	if sp.Default != nil {
		r, err := compile("default", sp.Default)
		if err != nil {
			return nil, err
		}
		s.def = r
	}
	for i := range sp.Keys {
		r, err := compile(fmt.Sprintf("keys[%d]", i), &sp.Keys[i])
		if err != nil {
			return nil, err
		}
		s.keys = append(s.keys, *r)
	}
	return s, nil
}

func compile(name string, p *config.KeyPolicy) (*rule, error) {
	secs := func(d config.Duration, def time.Duration) int64 { return int64(d.Or(def) / time.Second) }
	r := &rule{name: name, keyID: p.KeyID, label: p.Label, off: p.Off, digestOnly: p.AllowDigestOnly,
		maxValidity: secs(p.MaxValidity, config.DefaultMaxValidity),
		maxBackdate: secs(p.MaxBackdate, config.DefaultMaxBackdate),
		maxAhead:    secs(p.MaxAhead, config.DefaultMaxAhead)}
	for _, z := range p.Zones {
		w, err := WireName(z)
		if err != nil {
			return nil, fmt.Errorf("%w: signing_policy.%s: %v", config.ErrInvalid, name, err)
		}
		r.zones = append(r.zones, w)
	}
	for _, t := range p.Types {
		c, err := TypeCode(t)
		if err != nil {
			return nil, fmt.Errorf("%w: signing_policy.%s: %v", config.ErrInvalid, name, err)
		}
		r.types = append(r.types, c)
	}
	return r, nil
}

// rule returns the rule of a key, or nil when it has none: the first entry of keys that
// matches it, or the default.
func (s *Set) rule(rec *tchsmpb.KeyRecord) *rule {
	if s == nil {
		return nil
	}
	r := s.def
	for i := range s.keys {
		k := &s.keys[i]
		if k.keyID != "" && k.keyID == rec.GetKeyId() {
			r = k
			break
		}
		if k.label != "" {
			if ok, _ := path.Match(k.label, rec.GetLabel()); ok {
				r = k
				break
			}
		}
	}
	if r == nil || r.off {
		return nil
	}
	return r
}

// Has reports whether key rec has a policy.
func (s *Set) Has(rec *tchsmpb.KeyRecord) bool { return s.rule(rec) != nil }

// ModeOf says how the policy applies to key rec: ModeNone (no policy), ModeEnforced, or
// ModeAdvisory when the key's entry lets digest-only requests through unchecked; and the
// entry's name.
func (s *Set) ModeOf(rec *tchsmpb.KeyRecord) (Mode, string) {
	r := s.rule(rec)
	switch {
	case r == nil:
		return ModeNone, ""
	case r.digestOnly:
		return ModeAdvisory, r.name
	}
	return ModeEnforced, r.name
}

// Check decides whether a node may sign msg with key k under mech at time now. msg is the whole
// message, nil for a digest-only request; for a digest-only RSA request mech is the hash
// mechanism the DigestInfo names (RSAPKCS when the payload is not a DigestInfo). A key without a
// policy is never refused; a message that parses is returned in Signed all the same (for the
// audit log).
func (s *Set) Check(k Key, mech scheme.Mechanism, msg []byte, now time.Time) Verdict {
	r := s.rule(k.Record)
	if r == nil {
		v := Verdict{Mode: ModeNone}
		if msg != nil {
			v.Signed, _ = Parse(msg)
		}
		return v
	}
	v := Verdict{Mode: ModeEnforced, Policy: r.name}
	if mech == scheme.SHA1RSAPKCS {
		v.Refusal = refuse(ReasonSHA1, "SHA-1 mechanisms are refused for keys with a policy")
		return v
	}
	if msg == nil {
		if !r.digestOnly {
			v.Refusal = refuse(ReasonDigestOnly, "a request without the message (digest only, %v) cannot be checked; the key's policy refuses it", mech)
			return v
		}
		if _, err := algorithms(k, mech); err != nil {
			v.Refusal = err
			return v
		}
		v.Mode = ModeAdvisory
		return v
	}
	v.Refusal = r.check(k, mech, msg, now, &v.Signed)
	return v
}

// algorithms returns the DNSSEC algorithm numbers a key signs with under mech (RFC 8624): RSA
// with SHA-256 is 8 (RSASHA256), with SHA-512 10 (RSASHA512); Ed25519 is 15. RSASHA1 (5) and
// RSASHA1-NSEC3-SHA1 (7) are refused with the SHA-1 mechanism; SHA-224 and SHA-384 have no
// RSA algorithm.
func algorithms(k Key, mech scheme.Mechanism) (uint8, *Refusal) {
	switch scheme.Of(k.Record) {
	case scheme.ShoupRSA:
		switch mech {
		case scheme.SHA256RSAPKCS:
			return 8, nil
		case scheme.SHA512RSAPKCS:
			return 10, nil
		}
	case scheme.Ed25519FROST:
		if mech == scheme.EDDSA {
			return 15, nil
		}
	}
	return 0, refuse(ReasonMechanism, "no DNSSEC algorithm signs with %v and a %v key", mech, scheme.Of(k.Record))
}

func (r *rule) check(k Key, mech scheme.Mechanism, msg []byte, now time.Time, out **SignedData) *Refusal {
	alg, rf := algorithms(k, mech)
	if rf != nil {
		return rf
	}
	d, err := Parse(msg)
	if err != nil {
		return refuse(ReasonMalformed, "%v", err)
	}
	*out = d
	if d.Algorithm != alg {
		return refuse(ReasonAlgorithm, "RRSIG algorithm %d, but this key signs %v as algorithm %d", d.Algorithm, mech, alg)
	}
	tags, terr := KeyTags(k, alg)
	if terr != nil {
		return refuse(ReasonKeyTag, "%v", terr)
	}
	if !slices.Contains(tags[:], d.KeyTag) {
		return refuse(ReasonKeyTag, "key tag %d, this key's are %d (ZSK) and %d (KSK)", d.KeyTag, tags[0], tags[1])
	}
	if len(r.zones) > 0 && !slices.ContainsFunc(r.zones, func(z []byte) bool { return bytes.Equal(z, d.Signer) }) {
		return refuse(ReasonZone, "signer %s is not a zone this key signs", d.SignerName())
	}
	if len(r.types) > 0 && !slices.Contains(r.types, d.TypeCovered) {
		return refuse(ReasonType, "type %s is not one this key signs", TypeName(d.TypeCovered))
	}
	return r.checkTimes(d.Inception, d.Expiration, now)
}

// checkTimes checks an RRSIG's inception and expiration (32-bit serial numbers of seconds,
// RFC 4034 section 3.1.5, compared with RFC 1982 arithmetic) against the rule and the clock.
func (r *rule) checkTimes(inception, expiration uint32, now time.Time) *Refusal {
	validity := expiration - inception // mod 2^32
	if validity == 0 || validity >= 1<<31 {
		// RFC 1982: expiration is not greater than inception (2^31 apart is undefined).
		return refuse(ReasonInverted, "expiration %d is not after inception %d", expiration, inception)
	}
	if int64(validity) > r.maxValidity {
		return refuse(ReasonValidity, "validity %s, at most %s", secs(int64(validity)), secs(r.maxValidity))
	}
	// The inception as the instant nearest the node's clock: RFC 1982 distance, in −2^31..2^31.
	delta := int32(inception - uint32(now.Unix()))
	if delta == math.MinInt32 {
		return refuse(ReasonBackdated, "inception %d is 2^31 s from the node's clock", inception)
	}
	if int64(-delta) > r.maxBackdate {
		return refuse(ReasonBackdated, "inception %s before the node's clock, at most %s", secs(int64(-delta)), secs(r.maxBackdate))
	}
	if ahead := int64(delta) + int64(validity); ahead > r.maxAhead {
		return refuse(ReasonAhead, "expiration %s after the node's clock, at most %s", secs(ahead), secs(r.maxAhead))
	}
	return nil
}

func secs(s int64) string { return (time.Duration(s) * time.Second).String() }

// KeyTags returns the key tags (RFC 4034 Appendix B) of a key's DNSKEY record as algorithm alg,
// with flags 256 (a ZSK) and 257 (a KSK, SEP bit): a node does not know which the signer made it.
func KeyTags(k Key, alg uint8) ([2]uint16, error) {
	pub, err := dnskeyPublic(k)
	if err != nil {
		return [2]uint16{}, err
	}
	var tags [2]uint16
	for i, flags := range []uint16{256, 257} {
		rdata := append([]byte{byte(flags >> 8), byte(flags), 3, alg}, pub...)
		tags[i] = KeyTag(rdata)
	}
	return tags, nil
}

// dnskeyPublic is the public-key field of a key's DNSKEY RDATA: RFC 3110 for RSA (exponent
// length, exponent, modulus), RFC 8080 for Ed25519 (the 32 bytes).
func dnskeyPublic(k Key) ([]byte, error) {
	switch pk := k.Public.(type) {
	case *rsa.PublicKey:
		e := bigEndian(uint64(pk.E))
		var out []byte
		if len(e) <= 255 {
			out = append(out, byte(len(e)))
		} else {
			out = append(out, 0, byte(len(e)>>8), byte(len(e)))
		}
		out = append(out, e...)
		return append(out, pk.N.Bytes()...), nil
	case ed25519.PublicKey:
		if len(pk) != ed25519.PublicKeySize {
			return nil, errors.New("dnspolicy: bad Ed25519 public key")
		}
		return append([]byte(nil), pk...), nil
	}
	return nil, fmt.Errorf("dnspolicy: no DNSKEY form for a %T", k.Public)
}

func bigEndian(v uint64) []byte {
	var out []byte
	for ; v > 0; v >>= 8 {
		out = append([]byte{byte(v)}, out...)
	}
	return out
}

// KeyTag is RFC 4034 Appendix B's checksum over a DNSKEY RDATA (for every algorithm but 1).
func KeyTag(rdata []byte) uint16 {
	var ac uint32
	for i, b := range rdata {
		if i&1 == 0 {
			ac += uint32(b) << 8
		} else {
			ac += uint32(b)
		}
	}
	ac += ac >> 16 & 0xffff
	return uint16(ac)
}

// SerialTime is the instant an RRSIG time field (seconds modulo 2^32) names, taken as the one
// nearest to now (RFC 1982, RFC 4034 section 3.1.5).
func SerialTime(t uint32, now time.Time) time.Time {
	return time.Unix(now.Unix()+int64(int32(t-uint32(now.Unix()))), 0)
}
