package frost

import (
	"crypto/rand"
	"testing"
	"time"

	"filippo.io/edwards25519"
)

// The decoders' fuzz targets: none may panic, and what decodes re-encodes to the same bytes.

func FuzzDecodeElement(f *testing.F) {
	f.Add(edwards25519.NewGeneratorPoint().Bytes())
	f.Add(edwards25519.NewIdentityPoint().Bytes())
	f.Add(bytesOf(0xff, 32))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeElement(b)
		if err == nil && (string(p.Bytes()) != string(b) || !primeOrder(p)) {
			t.Fatalf("accepted %x", b)
		}
	})
}

func FuzzDecodeCommitReply(f *testing.F) {
	pk, shares := dealKey(f, 2, 3)
	p, _ := NewParticipant(pk, shares[1], Options{})
	cs, _ := p.Commit(rand.Reader, "", 2)
	f.Add(EncodeCommitReply(time.Minute, cs))
	f.Add([]byte{0, 0, 0, 1, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		ttl, cs, err := DecodeCommitReply(1, b)
		if err == nil && string(EncodeCommitReply(ttl, cs)) != string(b) {
			t.Fatalf("re-encoding differs for %x", b)
		}
	})
}

func FuzzDecodeSignRequest(f *testing.F) {
	pk, shares := dealKey(f, 2, 3)
	p1, _ := NewParticipant(pk, shares[1], Options{})
	p2, _ := NewParticipant(pk, shares[2], Options{})
	c1, _ := p1.Commit(rand.Reader, "", 1)
	c2, _ := p2.Commit(rand.Reader, "", 1)
	b, _ := EncodeSignRequest([]byte("msg"), append(c1, c2...))
	f.Add(b)
	f.Add([]byte{tagSign, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		// SignRequestMessage (what a node's policy reads) never panics, and agrees with the
		// full decoder on every request the full decoder takes.
		quick, sign, qerr := SignRequestMessage(b)
		msg, list, err := DecodeSignRequest(b)
		if err != nil {
			return
		}
		if qerr != nil || !sign || string(quick) != string(msg) {
			t.Fatalf("SignRequestMessage(%x) = %x, %v, %v; DecodeSignRequest's message %x", b, quick, sign, qerr, msg)
		}
		again, err := EncodeSignRequest(msg, list)
		if err != nil || string(again) != string(b) {
			t.Fatalf("re-encoding differs for %x", b)
		}
		// The participant's own checks on arbitrary lists must not panic either.
		_, _ = p1.Sign("", msg, list)
	})
}

func FuzzDecodeCommitRequest(f *testing.F) {
	f.Add([]byte{tagCommit, 0, 16})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := DecodeCommitRequest(b)
		if err != nil {
			return
		}
		again, err := EncodeCommitRequest(n)
		if err != nil || string(again) != string(b) {
			t.Fatalf("re-encoding differs for %x", b)
		}
	})
}

func FuzzParseShare(f *testing.F) {
	pk, shares := dealKey(f, 2, 3)
	f.Add(2, shares[2].Bytes())
	f.Add(1, bytesOf(0xff, 32))
	var sch Scheme
	f.Fuzz(func(t *testing.T, i int, b []byte) {
		s, err := sch.ParseShare(pk, i, b)
		if err != nil {
			return
		}
		out, err := sch.MarshalShare(pk, s)
		if err != nil || string(out) != string(b) {
			t.Fatalf("re-encoding differs for %x", b)
		}
		_ = sch.CheckShare(pk, s)
	})
}

func FuzzDecodeParams(f *testing.F) {
	pk, _ := dealKey(f, 2, 3)
	f.Add(2, 3, pk.EncodeParams())
	f.Add(1, 1, bytesOf(0, 64))
	f.Fuzz(func(t *testing.T, k, n int, b []byte) {
		p, err := DecodeParams(k, n, b)
		if err == nil && string(p.EncodeParams()) != string(b) {
			t.Fatalf("re-encoding differs for %x", b)
		}
	})
}
