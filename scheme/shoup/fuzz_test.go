package shoup

import (
	"crypto/rand"
	"errors"
	"math/big"
	"testing"

	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
	"google.golang.org/protobuf/proto"
)

// FuzzCombine feeds the combiner arbitrary share lists: it must return an error or a signature
// that verifies, and never panic.
func FuzzCombine(f *testing.F) {
	_, pk, shares := dealt(f, 1024, 2, 3)
	em := encode(f, pk, scheme.SHA256RSAPKCS, []byte("fuzz"))
	s1, _ := SignShare(pk, shares[0], em)
	s2, _ := SignShare(pk, shares[1], em)
	f.Add(uint8(1), s1.X.Bytes(), uint8(2), s2.X.Bytes(), em)
	f.Add(uint8(0), []byte{}, uint8(200), []byte{1}, em)
	f.Add(uint8(1), s1.X.Bytes(), uint8(1), s1.X.Bytes(), em[:10])
	f.Fuzz(func(t *testing.T, i1 uint8, x1 []byte, i2 uint8, x2 []byte, m []byte) {
		set := []*SigShare{{Index: int(i1), X: new(big.Int).SetBytes(x1)}, {Index: int(i2), X: new(big.Int).SetBytes(x2)}}
		sig, err := CombineAny(pk, m, set)
		if err == nil {
			if verr := Verify(pk, m, sig); verr != nil {
				t.Fatalf("Combine returned a signature that does not verify: %v", verr)
			}
		}
	})
}

// FuzzVerifyShare checks that arbitrary proofs are rejected without panics.
func FuzzVerifyShare(f *testing.F) {
	_, pk, shares := dealt(f, 1024, 2, 3)
	em := encode(f, pk, scheme.SHA256RSAPKCS, []byte("fuzz"))
	ss, _ := SignShare(pk, shares[0], em)
	p, _ := Prove(rand.Reader, pk, shares[0], em, ss)
	f.Add(1, ss.X.Bytes(), p.C.Bytes(), p.Z.Bytes())
	f.Add(0, []byte{}, []byte{}, []byte{})
	f.Add(-1, []byte{1}, []byte{2}, []byte{3})
	f.Fuzz(func(t *testing.T, idx int, x, c, z []byte) {
		share := &SigShare{Index: idx, X: new(big.Int).SetBytes(x)}
		err := VerifyShare(pk, em, share, &Proof{C: new(big.Int).SetBytes(c), Z: new(big.Int).SetBytes(z)})
		if err == nil && (idx != 1 || share.X.Cmp(ss.X) != 0) {
			t.Fatalf("forged proof accepted for node %d", idx)
		}
		if err != nil && !errors.Is(err, ErrBadShare) && !errors.Is(err, ErrInvalidIndex) {
			t.Fatalf("unexpected error kind: %v", err)
		}
	})
}

// FuzzEncodePayload checks the PKCS#1 v1.5 encoder's length rules and layout.
func FuzzEncodePayload(f *testing.F) {
	f.Add(256, []byte("payload"))
	f.Add(11, []byte{})
	f.Add(0, []byte{1})
	f.Add(-5, []byte{1})
	f.Fuzz(func(t *testing.T, kLen int, payload []byte) {
		if kLen > 1<<16 {
			return
		}
		em, err := EncodePayload(kLen, payload)
		if err != nil {
			if !errors.Is(err, ErrMessageTooLong) {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		if len(em) != kLen || em[0] != 0 || em[1] != 1 || em[kLen-len(payload)-1] != 0 || kLen-len(payload)-3 < 8 {
			t.Fatalf("bad encoding for kLen=%d, payload=%d", kLen, len(payload))
		}
	})
}

// FuzzDecodePublic feeds DecodePublic arbitrary records: it must refuse them or return a key
// whose record encodes back to the same RSA fields, and never panic.
func FuzzDecodePublic(f *testing.F) {
	_, pk, _ := dealt(f, 1024, 2, 3)
	rec := &tchsmpb.KeyRecord{}
	if err := (Scheme{}).EncodePublic(pk, rec); err != nil {
		f.Fatal(err)
	}
	good, err := proto.Marshal(rec)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{})
	f.Add(good[:len(good)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		rec := new(tchsmpb.KeyRecord)
		if proto.Unmarshal(b, rec) != nil {
			return
		}
		got, err := (Scheme{}).DecodePublic(rec)
		if err != nil {
			if !errors.Is(err, scheme.ErrInvalidKey) {
				t.Fatalf("refusal without ErrInvalidKey: %v", err)
			}
			return
		}
		again := &tchsmpb.KeyRecord{}
		if err := (Scheme{}).EncodePublic(got, again); err != nil {
			t.Fatal(err)
		}
		if new(big.Int).SetBytes(again.Modulus).Cmp(new(big.Int).SetBytes(rec.Modulus)) != 0 || again.Bits != rec.Bits ||
			again.PublicExponent != rec.PublicExponent || again.K != rec.K || again.N != rec.N {
			t.Fatal("the decoded key encodes to other fields")
		}
	})
}
