package cli

import (
	"testing"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/scheme"
)

// keys show gives an ECDSA P-256 key's explicit parameters: n, t and the exact signer count.
func TestSignersLine(t *testing.T) {
	got := signersLine(client.KeyInfo{Algorithm: scheme.ECDSAP256HM, K: 5, L: 7})
	if want := "signers:   exactly 5 of 7 nodes sign (t=2: a presignature's fixed set; t corrupt nodes learn nothing)\n"; got != want {
		t.Fatalf("%q", got)
	}
	if got := signersLine(client.KeyInfo{Algorithm: scheme.Ed25519FROST, K: 3, L: 5}); got != "" {
		t.Fatalf("Ed25519: %q", got)
	}
	if algName(scheme.ECDSAP256HM) != "ecdsa-p256-hm" {
		t.Fatal(algName(scheme.ECDSAP256HM))
	}
}
