package ecdsahm

import (
	"bytes"
	"testing"
)

// FuzzBoundaryDecoders feeds the boundary's request and reply decoders arbitrary bytes: they
// must not panic, and what they accept must encode back to the same bytes (one encoding each).
func FuzzBoundaryDecoders(f *testing.F) {
	f.Add(encodePresignReq(presignReq{round: 2, batch: make([]byte, 16), count: 3, set: []int{1, 2, 3}}))
	f.Add(encodePrepareReq(prepareReq{id: make([]byte, 20), set: []int{1, 3, 5}, digest: make([]byte, 32)}))
	f.Add(encodeReleaseReq(make([]byte, 20)))
	f.Add(encodePresignResult([]PresignPublic{{ID: make([]byte, 20), Set: []int{1, 2, 3}, R: make([]byte, PointSize)}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 0 {
			r := &reader{b: b[1:]}
			switch b[0] {
			case kindPresign:
				if q, ok := decodePresignReq(r); ok && !bytes.Equal(encodePresignReq(q), b) {
					t.Fatalf("presign request %x re-encodes differently", b)
				}
			case kindPrepare:
				if q, ok := decodePrepareReq(r); ok && !bytes.Equal(encodePrepareReq(q), b) {
					t.Fatalf("prepare request %x re-encodes differently", b)
				}
			}
		}
		if l, err := decodePresignResult(b); err == nil && !bytes.Equal(encodePresignResult(l), b) {
			t.Fatalf("presignature list %x re-encodes differently", b)
		}
	})
}
