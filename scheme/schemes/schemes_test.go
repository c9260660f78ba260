package schemes

import (
	"errors"
	"testing"

	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme"
)

func TestLookup(t *testing.T) {
	for _, a := range []scheme.Algorithm{scheme.Unspecified, scheme.ShoupRSA} {
		s, err := Lookup(a)
		if err != nil || s.Algorithm() != scheme.ShoupRSA {
			t.Fatalf("Lookup(%v) = %v, %v", a, s, err)
		}
	}
	if _, err := Lookup(99); !errors.Is(err, scheme.ErrUnknownAlgorithm) {
		t.Fatalf("Lookup(99): %v", err)
	}
	if s, err := ForRecord(&tchsmpb.KeyRecord{}); err != nil || s.Algorithm() != scheme.ShoupRSA {
		t.Fatalf("a record without algorithm: %v, %v", s, err)
	}
	if s, err := ByName("RSA"); err != nil || s.Algorithm() != scheme.ShoupRSA {
		t.Fatalf("ByName(RSA): %v, %v", s, err)
	}
	if _, err := ByName("ed25519"); !errors.Is(err, scheme.ErrUnknownAlgorithm) {
		t.Fatalf("ByName(ed25519): %v", err)
	}
	rsa, _ := Lookup(scheme.ShoupRSA)
	if !Accepts(rsa, scheme.SHA256RSAPKCS) || Accepts(rsa, 99) {
		t.Fatal("Accepts")
	}
	// Every registered scheme has its own algorithm.
	seen := map[scheme.Algorithm]bool{}
	for _, s := range All() {
		if seen[s.Algorithm()] || s.Algorithm() == scheme.Unspecified {
			t.Fatalf("algorithm %v registered twice or unspecified", s.Algorithm())
		}
		seen[s.Algorithm()] = true
	}
}
