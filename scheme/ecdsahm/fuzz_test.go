package ecdsahm

import (
	"bytes"
	"testing"
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
