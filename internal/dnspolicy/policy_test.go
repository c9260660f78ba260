package dnspolicy

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/config"
	// The node's exponentiation engine, for the benchmark's share.
	_ "github.com/tchsm/tchsm/internal/modexp/openssl"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/shoup"
)

// A DNSKEY made by ldns-keygen 1.8.3 (-a RSASHA256 -b 1024 example.test), which named its key
// tag 3633 ("Kexample.test.+008+03633").
const ldnsDNSKEY = "AwEAAcAFIoacmJIfY5WE07O7LnbTutYHrcztNkrE6g0cfEsoMdEbzYZy3x3WTElKXZmHQF1+439aoBCoBs0HaZOQ8QHduATskGGi3uZj6bYNAy6vKKeBRdzXqrli/us3mOIUHSI6h8JtHTGL7dyuMxuAb20kH7jY37819S32l6DoMPTd"

// ldnsKey is ldnsDNSKEY's RSA public key (RFC 3110).
func ldnsKey(t testing.TB) *rsa.PublicKey {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(ldnsDNSKEY)
	if err != nil || b[0] == 0 {
		t.Fatal(err)
	}
	el := int(b[0])
	return &rsa.PublicKey{E: int(new(big.Int).SetBytes(b[1 : 1+el]).Int64()), N: new(big.Int).SetBytes(b[1+el:])}
}

func rsaRecord(id, label string) *tchsmpb.KeyRecord {
	return &tchsmpb.KeyRecord{KeyId: id, Label: label, Algorithm: uint32(scheme.ShoupRSA)}
}

func TestKeyTag(t *testing.T) {
	pub := ldnsKey(t)
	tags, err := KeyTags(Key{Record: rsaRecord("k", "l"), Public: pub}, 8)
	if err != nil {
		t.Fatal(err)
	}
	if tags[0] != 3633 {
		t.Fatalf("ZSK key tag %d, ldns says 3633", tags[0])
	}
	raw, _ := base64.StdEncoding.DecodeString(ldnsDNSKEY)
	if got := KeyTag(append([]byte{1, 1, 3, 8}, raw...)); tags[1] != got || got == tags[0] {
		t.Fatalf("KSK key tag %d, want %d", tags[1], got)
	}
	other, _ := KeyTags(Key{Record: rsaRecord("k", "l"), Public: pub}, 10)
	if other == tags {
		t.Fatal("the algorithm does not change the key tag")
	}
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := KeyTags(Key{Public: edPub}, 15); err != nil {
		t.Fatal(err)
	}
}

// fixture is a policy, a key and a clock for Check.
type fixture struct {
	t    *testing.T
	set  *Set
	key  Key
	tags [2]uint16
	now  time.Time
}

func newFixture(t *testing.T, sp *config.SigningPolicy) *fixture {
	t.Helper()
	set, err := Compile(sp)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, set: set, key: Key{Record: rsaRecord("00112233445566778899aabbccddeeff", "zsk-example"), Public: ldnsKey(t)},
		now: time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)}
	f.tags, _ = KeyTags(f.key, 8)
	return f
}

// msg is the signed data of an A RRset of www.<zone> valid from inc to exp (Unix seconds,
// taken mod 2^32).
func (f *fixture) msg(zone string, inc, exp int64, edit func(*sig)) []byte {
	s := sig{typ: 1, alg: 8, labels: uint8(len(labels(wire(f.t, zone))) + 1), ttl: 3600, exp: uint32(exp), inc: uint32(inc), tag: f.tags[0], signer: zone}
	if edit != nil {
		edit(&s)
	}
	return build(f.t, s, aRR("www."+zone, 1))
}

func (f *fixture) check(mech scheme.Mechanism, msg []byte) Verdict {
	return f.set.Check(f.key, mech, msg, f.now)
}

// want checks that msg under SHA256_RSA_PKCS is refused for reason (or accepted for "").
func (f *fixture) want(name string, reason Reason, msg []byte) {
	f.t.Helper()
	v := f.check(scheme.SHA256RSAPKCS, msg)
	switch {
	case reason == "" && v.Refusal != nil:
		f.t.Errorf("%s: refused: %v", name, v.Refusal)
	case reason != "" && (v.Refusal == nil || v.Refusal.Reason != reason):
		f.t.Errorf("%s: verdict %+v, want refusal %s", name, v, reason)
	case reason == "" && v.Mode != ModeEnforced:
		f.t.Errorf("%s: mode %s", name, v.Mode)
	}
}

const day = 86400

func TestCheckTimes(t *testing.T) {
	f := newFixture(t, &config.SigningPolicy{Default: &config.KeyPolicy{}})
	now := f.now.Unix()
	f.want("14 days from an hour ago", "", f.msg("example.test", now-3600, now+14*day, nil))
	f.want("PowerDNS: 14 days back, three weeks", "", f.msg("example.test", now-14*day, now+7*day, nil))
	f.want("93 days exactly", "", f.msg("example.test", now-3600, now-3600+93*day, nil))
	f.want("93 days and a second", ReasonValidity, f.msg("example.test", now-3600, now-3600+93*day+1, nil))
	f.want("twenty years", ReasonValidity, f.msg("example.test", now-3600, now+20*365*day, nil))
	f.want("expiration = inception", ReasonInverted, f.msg("example.test", now, now, nil))
	f.want("expiration before inception", ReasonInverted, f.msg("example.test", now, now-1, nil))
	// Serial arithmetic: 70 years of validity wraps past 2^31 and reads as expiration before
	// inception; exactly 2^31 apart is undefined (RFC 1982) and refused.
	f.want("70 years", ReasonInverted, f.msg("example.test", now, now+70*365*day, nil))
	f.want("2^31 apart", ReasonInverted, f.msg("example.test", now, now+1<<31, nil))
	f.want("backdated 16 days", ReasonBackdated, f.msg("example.test", now-16*day, now+day, nil))
	f.want("backdated 15 days exactly", "", f.msg("example.test", now-15*day, now+day, nil))
	f.want("expired long ago", ReasonBackdated, f.msg("example.test", now-400*day, now-390*day, nil))
	f.want("starts in 80 days, lasts 30", ReasonAhead, f.msg("example.test", now+80*day, now+110*day, nil))
	f.want("starts in a day, lasts 14", "", f.msg("example.test", now+day, now+15*day, nil))

	// Across the 2106 wrap of the 32-bit field: the node's clock after 2^32 s, the RRSIG's
	// times modulo 2^32, one before the wrap and one after.
	f.now = time.Unix(1<<32+100, 0)
	f.want("across the wrap", "", f.msg("example.test", 1<<32-3600, 1<<32+14*day, nil))
	f.want("across the wrap, 20 years", ReasonValidity, f.msg("example.test", 1<<32-3600, 1<<32+20*365*day, nil))
}

// The node's clock against the signer's: a signer whose clock is ahead dates its inception in
// the node's future, one whose clock is behind dates it back further; within the limits both
// sign, beyond them they are refused.
func TestCheckClockSkew(t *testing.T) {
	f := newFixture(t, &config.SigningPolicy{Default: &config.KeyPolicy{
		MaxValidity: config.Duration(30 * day * time.Second),
		MaxBackdate: config.Duration(2 * time.Hour),
		MaxAhead:    config.Duration(31 * day * time.Second),
	}})
	signerMsg := func(skew int64) []byte { // the signer signs "an hour ago to 30 days ahead" by its clock
		at := f.now.Unix() + skew
		return f.msg("example.test", at-3600, at-3600+30*day, nil)
	}
	f.want("signer 5 minutes ahead", "", signerMsg(300))
	f.want("signer 5 minutes behind", "", signerMsg(-300))
	f.want("signer 59 minutes behind", "", signerMsg(-59*60))
	f.want("signer 2 hours behind", ReasonBackdated, signerMsg(-2*3600))
	f.want("signer 2 days ahead", ReasonAhead, signerMsg(2*day))
}

func TestCheckFields(t *testing.T) {
	f := newFixture(t, &config.SigningPolicy{Default: &config.KeyPolicy{Zones: []string{"Example.Test."}, Types: []string{"A", "SOA"}}})
	now := f.now.Unix()
	ok := f.msg("example.test", now-3600, now+14*day, nil)
	f.want("example.test", "", ok)
	f.want("other.test", ReasonZone, f.msg("other.test", now-3600, now+14*day, nil))
	f.want("sub.example.test", ReasonZone, f.msg("sub.example.test", now-3600, now+14*day, nil))
	f.want("type AAAA", ReasonType, build(t, sig{typ: 28, alg: 8, labels: 3, ttl: 60, exp: uint32(now + day), inc: uint32(now), tag: f.tags[0], signer: "example.test"},
		rr{owner: "www.example.test", typ: 28, class: 1, ttl: 60, rdata: make([]byte, 16)}))
	f.want("KSK tag", "", f.msg("example.test", now-3600, now+14*day, func(s *sig) { s.tag = f.tags[1] }))
	f.want("another key's tag", ReasonKeyTag, f.msg("example.test", now-3600, now+14*day, func(s *sig) { s.tag = f.tags[0] ^ 0x55 }))
	f.want("algorithm 10 under SHA-256", ReasonAlgorithm, f.msg("example.test", now-3600, now+14*day, func(s *sig) { s.alg = 10 }))
	f.want("algorithm 5", ReasonAlgorithm, f.msg("example.test", now-3600, now+14*day, func(s *sig) { s.alg = 5 }))
	f.want("not DNSSEC", ReasonMalformed, []byte("hello, world"))

	tags10, _ := KeyTags(f.key, 10)
	alg10 := f.msg("example.test", now-3600, now+14*day, func(s *sig) { s.alg, s.tag = 10, tags10[0] })
	if v := f.check(scheme.SHA512RSAPKCS, alg10); v.Refusal != nil {
		t.Errorf("RSASHA512: %v", v.Refusal)
	}
	for mech, reason := range map[scheme.Mechanism]Reason{scheme.SHA1RSAPKCS: ReasonSHA1, scheme.SHA384RSAPKCS: ReasonMechanism,
		scheme.SHA224RSAPKCS: ReasonMechanism, scheme.RSAPKCS: ReasonMechanism, scheme.EDDSA: ReasonMechanism} {
		if v := f.check(mech, ok); v.Refusal == nil || v.Refusal.Reason != reason {
			t.Errorf("%v: %+v, want %s", mech, v, reason)
		}
	}
	// Digest only: refused, also for SHA-1.
	for _, mech := range []scheme.Mechanism{scheme.SHA256RSAPKCS, scheme.RSAPKCS} {
		if v := f.check(mech, nil); v.Refusal == nil || v.Refusal.Reason != ReasonDigestOnly {
			t.Errorf("digest only %v: %+v", mech, v)
		}
	}
	if v := f.check(scheme.SHA1RSAPKCS, nil); v.Refusal == nil || v.Refusal.Reason != ReasonSHA1 {
		t.Errorf("digest only SHA-1: %+v", v)
	}
	var rf *Refusal
	if v := f.check(scheme.SHA256RSAPKCS, []byte("x")); !errors.As(error(v.Refusal), &rf) || rf.Detail == "" {
		t.Errorf("refusal %v", v.Refusal)
	}
}

func TestMatchingAndAdvisory(t *testing.T) {
	f := newFixture(t, &config.SigningPolicy{
		Default: &config.KeyPolicy{Zones: []string{"example.test"}},
		Keys: []config.KeyPolicy{
			{Label: "legacy-*", Off: true},
			{KeyID: "ffeeddccbbaa99887766554433221100", AllowDigestOnly: true},
			{Label: "zsk-*", Zones: []string{"other.test"}},
		},
	})
	now := f.now.Unix()
	other := f.msg("other.test", now-3600, now+14*day, nil)
	f.want("zsk-* allows other.test", "", other)
	if v := f.check(scheme.SHA256RSAPKCS, other); v.Policy != "keys[2]" {
		t.Errorf("policy %q", v.Policy)
	}

	f.key.Record = rsaRecord("ffeeddccbbaa99887766554433221100", "zsk-example")
	if v := f.check(scheme.SHA256RSAPKCS, nil); v.Refusal != nil || v.Mode != ModeAdvisory {
		t.Errorf("advisory digest only: %+v", v)
	}
	for _, mech := range []scheme.Mechanism{scheme.RSAPKCS, scheme.SHA1RSAPKCS} { // not a DigestInfo, SHA-1
		if v := f.check(mech, nil); v.Refusal == nil {
			t.Errorf("advisory digest only %v accepted", mech)
		}
	}
	f.want("advisory key, a message is still checked", "", other)
	f.want("advisory key, a message is still checked: 20 years", ReasonValidity, f.msg("other.test", now, now+20*365*day, nil))

	f.key.Record = rsaRecord("00112233445566778899aabbccddeeff", "legacy-zsk")
	if v := f.check(scheme.RSAPKCS, []byte("anything")); v.Refusal != nil || v.Mode != ModeNone {
		t.Errorf("off: %+v", v)
	}
	f.key.Record = rsaRecord("00112233445566778899aabbccddeeff", "ksk")
	f.want("default: example.test", "", f.msg("example.test", now-3600, now+14*day, nil))
	f.want("default: not other.test", ReasonZone, other)

	// No policy at all: nothing is refused, a message that parses is still reported.
	none := newFixture(t, nil)
	if v := none.check(scheme.SHA1RSAPKCS, nil); v.Refusal != nil || v.Mode != ModeNone {
		t.Errorf("no policy: %+v", v)
	}
	if v := none.check(scheme.SHA256RSAPKCS, other); v.Refusal != nil || v.Signed == nil {
		t.Errorf("no policy, message: %+v", v)
	}
	var nilSet *Set
	if nilSet.Has(f.key.Record) {
		t.Error("nil set has a policy")
	}
	if m, name := nilSet.ModeOf(f.key.Record); m != ModeNone || name != "" {
		t.Errorf("nil set: mode %v %q", m, name)
	}
	// ModeOf, what `tchsm keys show` reports per node.
	for _, c := range []struct {
		id, label string
		mode      Mode
		name      string
	}{
		{"00112233445566778899aabbccddeeff", "legacy-zsk", ModeNone, ""},
		{"ffeeddccbbaa99887766554433221100", "zsk-example", ModeAdvisory, "keys[1]"},
		{"00112233445566778899aabbccddeeff", "zsk-example", ModeEnforced, "keys[2]"},
		{"00112233445566778899aabbccddeeff", "ksk", ModeEnforced, "default"},
	} {
		if m, name := f.set.ModeOf(rsaRecord(c.id, c.label)); m != c.mode || name != c.name {
			t.Errorf("ModeOf(%s, %s) = %v %q, want %v %q", c.id, c.label, m, name, c.mode, c.name)
		}
	}
}

func TestCompileRefuses(t *testing.T) {
	for name, sp := range map[string]*config.SigningPolicy{
		"zone":          {Default: &config.KeyPolicy{Zones: []string{"a..b"}}},
		"type":          {Default: &config.KeyPolicy{Types: []string{"RRSIG"}}},
		"both matchers": {Keys: []config.KeyPolicy{{KeyID: "x", Label: "y"}}},
		"no matcher":    {Keys: []config.KeyPolicy{{}}},
		"default label": {Default: &config.KeyPolicy{Label: "x"}},
		"bad glob":      {Keys: []config.KeyPolicy{{Label: "["}}},
		"70 years":      {Default: &config.KeyPolicy{MaxValidity: config.Duration(70 * 365 * day * time.Second)}},
	} {
		if _, err := Compile(sp); !errors.Is(err, config.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestSerialTime(t *testing.T) {
	now := time.Unix(1<<32+10, 0)
	if got := SerialTime(5, now); got.Unix() != 1<<32+5 {
		t.Errorf("%d", got.Unix())
	}
	if got := SerialTime(1<<32-5, now); got.Unix() != 1<<32-5 {
		t.Errorf("%d", got.Unix())
	}
}

// BenchmarkPolicyVsShare_2048 compares what the policy adds to a node's signature share —
// hashing the message, parsing and checking it (Check) — with the share's exponentiation
// itself (shoup.SignShare with the node's engine), for a DNSKEY-sized RRset (4 records of 260
// bytes) under a 2048-bit key. Goal: check/share ≤ 5 %.
func BenchmarkPolicyVsShare_2048(b *testing.B) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	key, _, err := shoup.FromRSA(priv)
	if err != nil {
		b.Fatal(err)
	}
	pk, shares, err := shoup.Deal(rand.Reader, key, 2, 3)
	if err != nil {
		b.Fatal(err)
	}
	set, _ := Compile(&config.SigningPolicy{Default: &config.KeyPolicy{Zones: []string{"example.test"}}})
	k := Key{Record: rsaRecord("00112233445566778899aabbccddeeff", "ksk"), Public: &priv.PublicKey}
	tags, _ := KeyTags(k, 8)
	now := time.Now()
	s := sig{typ: 48, alg: 8, labels: 2, ttl: 3600, inc: uint32(now.Unix() - 3600), exp: uint32(now.Unix() + 14*day), tag: tags[1], signer: "example.test"}
	var rrs []rr
	for i := range 4 {
		rd := make([]byte, 260)
		rd[0] = byte(i)
		rrs = append(rrs, rr{owner: "example.test", typ: 48, class: 1, ttl: 3600, rdata: rd})
	}
	msg := build(b, s, rrs...)
	check := func() {
		sha256.Sum256(msg) // the node hashes the message itself
		if v := set.Check(k, scheme.SHA256RSAPKCS, msg, now); v.Refusal != nil {
			b.Fatal(v.Refusal)
		}
	}
	t, _ := shoup.Payload(scheme.SHA256RSAPKCS, msg)
	em, _ := shoup.EncodePayload(pk.Size(), t)
	share := func() {
		if _, err := shoup.SignShare(pk, shares[0], em); err != nil {
			b.Fatal(err)
		}
	}
	share() // precomputation
	var checkT, shareT time.Duration
	for b.Loop() {
		t0 := time.Now()
		for range 100 {
			check()
		}
		t1 := time.Now()
		share()
		checkT += t1.Sub(t0) / 100
		shareT += time.Since(t1)
	}
	b.ReportMetric(float64(checkT.Nanoseconds())/float64(b.N), "check-ns/op")
	b.ReportMetric(float64(shareT.Nanoseconds())/float64(b.N), "share-ns/op")
	b.ReportMetric(100*float64(checkT)/float64(shareT), "check/share-%")
}

// BenchmarkCheck_Ed25519: the policy check of an algorithm-15 RRSIG over a DNSKEY-sized RRset,
// what a node adds to each Ed25519 share (compare with scheme/frost's BenchmarkSignShare_3of5,
// the node's share with the commitment list checked).
func BenchmarkCheck_Ed25519(b *testing.B) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	set, _ := Compile(&config.SigningPolicy{Default: &config.KeyPolicy{Zones: []string{"example.test"}}})
	k := Key{Record: &tchsmpb.KeyRecord{KeyId: "00112233445566778899aabbccddeeff", Label: "ksk", Algorithm: uint32(scheme.Ed25519FROST)}, Public: pub}
	tags, _ := KeyTags(k, 15)
	now := time.Now()
	s := sig{typ: 48, alg: 15, labels: 2, ttl: 3600, inc: uint32(now.Unix() - 3600), exp: uint32(now.Unix() + 14*day), tag: tags[1], signer: "example.test"}
	var rrs []rr
	for i := range 4 {
		rd := make([]byte, 36)
		rd[0] = byte(i)
		rrs = append(rrs, rr{owner: "example.test", typ: 48, class: 1, ttl: 3600, rdata: rd})
	}
	msg := build(b, s, rrs...)
	for b.Loop() {
		if v := set.Check(k, scheme.EDDSA, msg, now); v.Refusal != nil {
			b.Fatal(v.Refusal)
		}
	}
}
