package dnspolicy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// sig is the RRSIG part of a test message.
type sig struct {
	typ         uint16
	alg, labels uint8
	ttl         uint32
	exp, inc    uint32
	tag         uint16
	signer      string
}

// rr is one record of a test RRset.
type rr struct {
	owner string
	typ   uint16
	class uint16
	ttl   uint32
	rdata []byte
}

func wire(t testing.TB, name string) []byte {
	t.Helper()
	w, err := WireName(name)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// build writes the signed data of s over rrs (in the order given).
func build(t testing.TB, s sig, rrs ...rr) []byte {
	t.Helper()
	b := binary.BigEndian.AppendUint16(nil, s.typ)
	b = append(b, s.alg, s.labels)
	b = binary.BigEndian.AppendUint32(b, s.ttl)
	b = binary.BigEndian.AppendUint32(b, s.exp)
	b = binary.BigEndian.AppendUint32(b, s.inc)
	b = binary.BigEndian.AppendUint16(b, s.tag)
	b = append(b, wire(t, s.signer)...)
	for _, r := range rrs {
		b = append(b, wire(t, r.owner)...)
		b = binary.BigEndian.AppendUint16(b, r.typ)
		b = binary.BigEndian.AppendUint16(b, r.class)
		b = binary.BigEndian.AppendUint32(b, r.ttl)
		b = binary.BigEndian.AppendUint16(b, uint16(len(r.rdata)))
		b = append(b, r.rdata...)
	}
	return b
}

func aRR(owner string, ip byte) rr {
	return rr{owner: owner, typ: 1, class: 1, ttl: 3600, rdata: []byte{192, 0, 2, ip}}
}

var baseSig = sig{typ: 1, alg: 8, labels: 3, ttl: 3600, exp: 2000, inc: 1000, tag: 4242, signer: "example.test"}

func TestParseGood(t *testing.T) {
	msg := build(t, baseSig, aRR("www.example.test", 1), aRR("www.example.test", 2))
	d, err := Parse(msg)
	if err != nil {
		t.Fatal(err)
	}
	if d.TypeCovered != 1 || d.Algorithm != 8 || d.Labels != 3 || d.OriginalTTL != 3600 || d.Expiration != 2000 ||
		d.Inception != 1000 || d.KeyTag != 4242 || d.RRs != 2 || d.Class != 1 {
		t.Fatalf("%+v", d)
	}
	if d.SignerName() != "example.test." || d.OwnerName() != "www.example.test." {
		t.Fatalf("names %q %q", d.SignerName(), d.OwnerName())
	}
	// The apex, a wildcard (labels without the "*") and the root zone.
	apex := baseSig
	apex.labels = 2
	if _, err := Parse(build(t, apex, aRR("example.test", 1))); err != nil {
		t.Errorf("apex: %v", err)
	}
	if _, err := Parse(build(t, apex, aRR("*.example.test", 1))); err != nil {
		t.Errorf("wildcard: %v", err)
	}
	if _, err := Parse(build(t, baseSig, aRR("*.example.test", 1))); err == nil {
		t.Error("wildcard with the \"*\" counted in labels accepted")
	}
	root := baseSig
	root.signer, root.labels, root.typ = ".", 0, 6
	if _, err := Parse(build(t, root, rr{owner: ".", typ: 6, class: 1, ttl: 3600, rdata: []byte{0}})); err != nil {
		t.Errorf("root: %v", err)
	}
}

func TestParseRefuses(t *testing.T) {
	good := aRR("www.example.test", 1)
	cases := map[string][]byte{
		"empty":           nil,
		"short":           make([]byte, 17),
		"no records":      build(t, baseSig),
		"type RRSIG":      build(t, sig{typ: 46, alg: 8, labels: 3, signer: "example.test"}, rr{owner: "www.example.test", typ: 46, class: 1}),
		"type OPT":        build(t, sig{typ: 41, alg: 8, labels: 3, signer: "example.test"}, rr{owner: "www.example.test", typ: 41, class: 1}),
		"type ANY":        build(t, sig{typ: 255, alg: 8, labels: 3, signer: "example.test"}, rr{owner: "www.example.test", typ: 255, class: 1}),
		"other type":      build(t, baseSig, rr{owner: "www.example.test", typ: 28, class: 1, ttl: 3600, rdata: make([]byte, 16)}),
		"other ttl":       build(t, baseSig, rr{owner: "www.example.test", typ: 1, class: 1, ttl: 60, rdata: []byte{1, 2, 3, 4}}),
		"other owner":     build(t, baseSig, good, aRR("ftp.example.test", 2)),
		"other class":     build(t, baseSig, good, rr{owner: "www.example.test", typ: 1, class: 3, ttl: 3600, rdata: []byte{192, 0, 2, 2}}),
		"duplicate":       build(t, baseSig, good, good),
		"out of order":    build(t, baseSig, aRR("www.example.test", 2), good),
		"labels too many": build(t, sig{typ: 1, alg: 8, labels: 4, ttl: 3600, signer: "example.test"}, good),
		"labels too few":  build(t, sig{typ: 1, alg: 8, labels: 2, ttl: 3600, signer: "example.test"}, good),
		"outside zone":    build(t, baseSig, aRR("www.other.test", 1)),
		"suffix not label": build(t, sig{typ: 1, alg: 8, labels: 2, ttl: 3600, signer: "ample.test"},
			aRR("example.test", 1)),
		"trailing":  append(build(t, baseSig, good), 0),
		"truncated": build(t, baseSig, good)[:len(build(t, baseSig, good))-1],
	}
	// An upper-case signer, an upper-case owner, a compression pointer in each.
	msg := build(t, baseSig, good)
	up := bytes.Clone(msg)
	up[19] = 'E' // first letter of "example" in the signer
	cases["upper-case signer"] = up
	up = bytes.Clone(msg)
	up[18+14+1] = 'W'
	cases["upper-case owner"] = up
	ptr := bytes.Clone(msg[:18+14])
	ptr = append(ptr, 3, 'w', 'w', 'w', 0xc0, 18)
	ptr = append(ptr, msg[18+14+18:]...)
	cases["compressed owner"] = ptr
	ext := bytes.Clone(msg)
	ext[18] = 0x47
	cases["extended label"] = ext
	// A name longer than 255 octets, and a label of 64.
	long := strings.Repeat(strings.Repeat("a", 63)+".", 4) + "test"
	raw := binary.BigEndian.AppendUint16(nil, 1)
	raw = append(raw, 8, 3)
	raw = append(raw, make([]byte, 14)...)
	for _, l := range strings.Split(long, ".") {
		raw = append(raw, byte(len(l)))
		raw = append(raw, l...)
	}
	raw = append(raw, 0)
	cases["name over 255"] = raw
	lab := binary.BigEndian.AppendUint16(nil, 1)
	lab = append(lab, 8, 3)
	lab = append(lab, make([]byte, 14)...)
	lab = append(lab, 64)
	lab = append(lab, make([]byte, 64)...)
	cases["label over 63"] = append(lab, 0)
	cases["too large"] = append(build(t, baseSig, rr{owner: "www.example.test", typ: 1, class: 1, ttl: 3600, rdata: make([]byte, 65000)}),
		build(t, baseSig, rr{owner: "www.example.test", typ: 1, class: 1, ttl: 3600, rdata: make([]byte, 1000)})[18+14:]...)
	for name, msg := range cases {
		if d, err := Parse(msg); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Parse = %+v, %v; want ErrMalformed", name, d, err)
		}
	}
}

func TestWireName(t *testing.T) {
	for in, want := range map[string]string{"Example.TEST.": "\x07example\x04test\x00", "a": "\x01a\x00", ".": "\x00"} {
		if got, err := WireName(in); err != nil || string(got) != want {
			t.Errorf("WireName(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"a..b", strings.Repeat("a", 64) + ".test", "a b.test", strings.Repeat("abcdefg.", 40)} {
		if _, err := WireName(bad); err == nil {
			t.Errorf("WireName(%q) succeeded", bad)
		}
	}
	if got := presentation([]byte("\x03a.b\x02\x00\xff\x00")); got != `a\.b.\000\255.` {
		t.Errorf("presentation = %q", got)
	}
}

func TestTypeCode(t *testing.T) {
	for in, want := range map[string]uint16{"soa": 6, "DNSKEY": 48, "TYPE65534": 65534, "https": 65} {
		if got, err := TypeCode(in); err != nil || got != want {
			t.Errorf("TypeCode(%q) = %d, %v", in, got, err)
		}
	}
	for _, bad := range []string{"RRSIG", "OPT", "ANY", "TYPE0", "TYPE70000", "BOGUS", "TYPE"} {
		if _, err := TypeCode(bad); err == nil {
			t.Errorf("TypeCode(%q) succeeded", bad)
		}
	}
	if TypeName(48) != "DNSKEY" || TypeName(65534) != "TYPE65534" {
		t.Error("TypeName")
	}
}

// FuzzParse: no input crashes Parse, and what it accepts is consistent with itself.
func FuzzParse(f *testing.F) {
	f.Add(build(f, baseSig, aRR("www.example.test", 1), aRR("www.example.test", 2)))
	f.Add(build(f, baseSig, aRR("*.example.test", 1)))
	f.Add([]byte{})
	f.Add(make([]byte, 19))
	f.Fuzz(func(t *testing.T, msg []byte) {
		d, err := Parse(msg)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		if d.RRs < 1 || !under(d.Owner, d.Signer) || d.TypeCovered == 46 {
			t.Fatalf("accepted %+v", d)
		}
		if len(d.Signer) > maxName || len(d.Owner) > maxName {
			t.Fatal("name over 255 accepted")
		}
		for _, n := range [][]byte{d.Signer, d.Owner} {
			if bytes.ContainsAny(n, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") && strings.ContainsAny(presentation(n), "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
				t.Fatal("upper case accepted")
			}
		}
		_ = d.SignerName() + d.OwnerName()
	})
}
