package ecdsahm

import (
	"bytes"
	"testing"

	"github.com/tchsm/tchsm/scheme"
)

// The decoders' fuzz targets: none may panic, and what decodes re-encodes to the same bytes.

func FuzzDecodeScalar(f *testing.F) {
	f.Add(make([]byte, 32))
	f.Add(append([]byte(nil), orderBytes...))
	f.Add(bytes.Repeat([]byte{0xff}, 32))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeScalar(b)
		if err == nil && !bytes.Equal(s.Bytes(), b) {
			t.Fatalf("accepted %x, re-encodes to %x", b, s.Bytes())
		}
	})
}

func FuzzDecodePoint(f *testing.F) {
	f.Add(baseMul(ScalarFromUint(1)).Bytes())
	f.Add(baseMul(ScalarFromUint(1)).BytesCompressed())
	f.Add([]byte{0})
	f.Add(append([]byte{4}, bytes.Repeat([]byte{0xff}, 64)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePoint(b)
		if err == nil && (p.IsInfinity() == 1 || !bytes.Equal(p.Bytes(), b)) {
			t.Fatalf("accepted %x", b)
		}
	})
}

func FuzzDecodePublicKey(f *testing.F) {
	c := newCluster(f, 3, 1)
	f.Add(c.pk.Marshal())
	f.Add([]byte{1, 3, 1})
	f.Add([]byte{1, 64, 31})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 3+PointSize*8 {
			return // keep each input fast: the consistency check costs one scalar multiplication per point
		}
		pk, err := DecodePublicKey(b)
		if err == nil && !bytes.Equal(pk.Marshal(), b) {
			t.Fatalf("re-encoding differs for %x", b)
		}
	})
}

func FuzzDecodeSignRequest(f *testing.F) {
	b, _ := EncodeSignRequest(SignRequest{KeyID: []byte("key"), ID: bytes.Repeat([]byte{7}, 20), Set: []int{1, 3, 5}, Digest: digestOf("x")})
	f.Add(b)
	f.Add([]byte{1, 0, 1, 'k', 0, 17})
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeSignRequest(b)
		if err != nil {
			return
		}
		again, err := EncodeSignRequest(req)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encoding of %x: %x, %v", b, again, err)
		}
	})
}

func FuzzDecodePresignPublic(f *testing.F) {
	pp := PresignPublic{ID: bytes.Repeat([]byte{1}, 20), Set: []int{2, 4, 6}, R: baseMul(ScalarFromUint(5)).Bytes()}
	f.Add(pp.Encode())
	f.Add([]byte{0, 1, 9, 3, 1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		pp, err := DecodePresignPublic(b)
		if err == nil && !bytes.Equal(pp.Encode(), b) {
			t.Fatalf("re-encoding differs for %x", b)
		}
	})
}

// FuzzPresignMessages plays a corrupt member 2 of a set {1, 2, 3} (t = 1) whose round-1 or
// round-2 body is the fuzzer's, sealed properly: member 1 must never panic, and must never
// finish with a presignature when a body differs from the honest one. The honest transcript
// is recorded once; each input runs a fresh member 1 against it (its own fresh values make the
// openings fail later, which is fine: the point is that no body crashes the parser or is
// accepted where it must not be).
func FuzzPresignMessages(f *testing.F) {
	c := newCluster(f, 3, 1)
	set := []int{1, 2, 3}
	params := PresignParams{KeyID: c.keyID, Set: set, Batch: bytes.Repeat([]byte{9}, 16), Count: 2}
	// Record an honest run's messages to member 1, round by round.
	parts := map[int]*Presign{}
	for _, i := range set {
		p, err := NewPresign(c.chs[i-1], c.pk, c.shares[i-1], params, nil)
		if err != nil {
			f.Fatal(err)
		}
		parts[i] = p
	}
	var toOne [4][]byte // round → member 3's sealed message to 1
	var msgs []scheme.Message
	for round := 1; round <= 3; round++ {
		var next []scheme.Message
		for _, i := range set {
			var in []scheme.Message
			for _, m := range msgs {
				if m.To == i {
					in = append(in, m)
				}
			}
			out, _, err := parts[i].Step(in)
			if err != nil {
				f.Fatal(err)
			}
			next = append(next, out...)
		}
		for _, m := range next {
			if m.From == 3 && m.To == 1 {
				toOne[round] = m.Payload
			}
		}
		msgs = next
	}
	f.Add(byte(1), make([]byte, 2*r1Item))
	f.Add(byte(2), make([]byte, 2*r2Item))
	f.Add(byte(2), bytes.Repeat([]byte{4}, 2*r2Item))
	f.Fuzz(func(t *testing.T, round byte, body []byte) {
		r := int(round%2) + 1
		p, err := NewPresign(c.chs[0], c.pk, c.shares[0], params, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := p.Step(nil); err != nil {
			t.Fatal(err)
		}
		for step := 1; step <= 3; step++ {
			var from2 []byte
			if step == r {
				from2, err = c.chs[1].seal(1, protoPresign, p.session, byte(step), body)
			} else {
				// Member 2's honest-looking but unrelated body of the right size.
				size := map[int]int{1: 2 * r1Item, 2: 2 * r2Item, 3: 2 * PointSize}[step]
				from2, err = c.chs[1].seal(1, protoPresign, p.session, byte(step), make([]byte, size))
			}
			if err != nil {
				t.Fatal(err)
			}
			in := []scheme.Message{{From: 2, To: 1, Payload: from2}, {From: 3, To: 1, Payload: toOne[step]}}
			_, done, err := p.Step(in)
			if err != nil {
				return
			}
			if done {
				t.Fatalf("member 1 finished a presignature with a corrupt member's made-up messages")
			}
		}
	})
}
