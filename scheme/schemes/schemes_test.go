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
	if s, err := ByName("ed25519"); err != nil || s.Algorithm() != scheme.Ed25519FROST {
		t.Fatalf("ByName(ed25519): %v, %v", s, err)
	}
	if _, err := ByName("ed448"); !errors.Is(err, scheme.ErrUnknownAlgorithm) {
		t.Fatalf("ByName(ed448): %v", err)
	}
	if s, err := ForRecord(&tchsmpb.KeyRecord{Algorithm: uint32(scheme.Ed25519FROST)}); err != nil || s.Algorithm() != scheme.Ed25519FROST {
		t.Fatalf("an Ed25519 record: %v, %v", s, err)
	}
	rsa, _ := Lookup(scheme.ShoupRSA)
	if !Accepts(rsa, scheme.SHA256RSAPKCS) || Accepts(rsa, 99) || Accepts(rsa, scheme.EDDSA) {
		t.Fatal("Accepts")
	}
	ed, _ := Lookup(scheme.Ed25519FROST)
	if !Accepts(ed, scheme.EDDSA) || Accepts(ed, scheme.RSAPKCS) || Accepts(ed, scheme.SHA256RSAPKCS) {
		t.Fatal("Accepts: only EDDSA for Ed25519 keys")
	}
	ec, err := ByName("ecdsa-p256-hm")
	if err != nil || ec.Algorithm() != scheme.ECDSAP256HM || scheme.ECDSAP256HM.String() != "ecdsa-p256-hm" {
		t.Fatalf("ByName(ecdsa-p256-hm): %v, %v", ec, err)
	}
	if !Accepts(ec, scheme.ECDSA) || !Accepts(ec, scheme.ECDSASHA256) || Accepts(ec, scheme.EDDSA) || Accepts(ec, scheme.RSAPKCS) || Accepts(ed, scheme.ECDSA) || Accepts(rsa, scheme.ECDSA) {
		t.Fatal("Accepts: only ECDSA and ECDSA_SHA256 for ECDSA P-256 keys")
	}
	if _, ok := ec.(scheme.Presigner); !ok {
		t.Fatal("the ECDSA P-256 scheme is not a Presigner")
	}
	if _, ok := ec.(scheme.PeerParticipants); !ok {
		t.Fatal("the ECDSA P-256 scheme does not make peer participants")
	}
	if _, ok := ec.(scheme.DKG); !ok {
		t.Fatal("the ECDSA P-256 scheme has no DKG")
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
