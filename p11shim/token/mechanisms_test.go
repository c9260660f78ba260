package token

import (
	"bytes"
	"errors"
	"testing"

	"github.com/tchsm/tchsm/scheme"
)

// TestMechanismTable checks the rows against each other and against scheme.Mechanism's numbering.
func TestMechanismTable(t *testing.T) {
	types := map[uint]bool{}
	cliNames := map[string]bool{}
	for _, m := range mechanisms {
		if types[m.typ] {
			t.Errorf("%s listed twice", m.name)
		}
		types[m.typ] = true
		if m.param {
			t.Errorf("%s takes a parameter; the module would start reading pParameter", m.name)
		}
		f := m.info.Flags
		switch {
		case f&CKF_SIGN != 0:
			// A signing row says what the cluster is asked for: threshold's mechanism of the
			// same name, which applies the same hash.
			if m.name != "CKM_"+m.wire.String() {
				t.Errorf("%s: wire mechanism %v", m.name, m.wire)
			}
			if h, err := m.wire.Hash(); err != nil || h != m.hash {
				t.Errorf("%s: hash %v, wire %v hashes with %v (%v)", m.name, m.hash, m.wire, h, err)
			}
			if m.cliName == "" || cliNames[m.cliName] {
				t.Errorf("%s: CLI name %q empty or taken", m.name, m.cliName)
			}
			cliNames[m.cliName] = true
			if m.keyType != CKK_RSA || m.info.MinKeySize != MinKeyBits || m.info.MaxKeySize != MaxKeyBits {
				t.Errorf("%s: %+v", m.name, m)
			}
		case f&CKF_DIGEST != 0:
			if m.hash == 0 || !m.hash.Available() || m.keyType != Unavailable || m.cliName != "" || m.wire != 0 {
				t.Errorf("%s: %+v", m.name, m)
			}
		case f&CKF_GENERATE_KEY_PAIR != 0:
			if m.hash != 0 || m.cliName != "" || m.wire != 0 {
				t.Errorf("%s: %+v", m.name, m)
			}
		default:
			t.Errorf("%s: flags %#x name no function", m.name, f)
		}
	}
	// EdDSA has constants but no scheme yet: not advertised, not accepted.
	for _, typ := range []uint{CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA} {
		if lookupMechanism(typ) != nil {
			t.Errorf("%#x is in the table before a scheme implements it", typ)
		}
	}
}

func TestMechanismDerived(t *testing.T) {
	var want []byte
	for _, m := range []uint{CKM_RSA_PKCS, CKM_SHA1_RSA_PKCS, CKM_SHA224_RSA_PKCS, CKM_SHA256_RSA_PKCS,
		CKM_SHA384_RSA_PKCS, CKM_SHA512_RSA_PKCS} {
		want = append(want, EncodeULong(m)...)
	}
	if got := allowedMechanisms(CKK_RSA); !bytes.Equal(got, want) {
		t.Errorf("CKA_ALLOWED_MECHANISMS = %x, want %x", got, want)
	}
	if got := allowedMechanisms(CKK_EC_EDWARDS); len(got) != 0 {
		t.Errorf("CKA_ALLOWED_MECHANISMS of an EdDSA key = %x", got)
	}
	if got := keyGenMechanism(CKK_RSA); got != CKM_RSA_PKCS_KEY_PAIR_GEN {
		t.Errorf("CKA_KEY_GEN_MECHANISM = %#x", got)
	}
	if got := keyGenMechanism(CKK_EC_EDWARDS); got != Unavailable {
		t.Errorf("CKA_KEY_GEN_MECHANISM of an EdDSA key = %#x", got)
	}
	list := mechanismList()
	if len(list) != len(mechanisms) {
		t.Fatal(list)
	}
	for i := 1; i < len(list); i++ {
		if list[i-1] >= list[i] {
			t.Fatalf("C_GetMechanismList not ascending: %#x", list)
		}
	}
	for _, typ := range append(list, CKM_EDDSA, 0x1040) {
		if TakesParam(typ) {
			t.Errorf("TakesParam(%#x)", typ)
		}
	}
	wantCLI := map[string]scheme.Mechanism{"raw": scheme.RSAPKCS, "sha1": scheme.SHA1RSAPKCS,
		"sha224": scheme.SHA224RSAPKCS, "sha256": scheme.SHA256RSAPKCS, "sha384": scheme.SHA384RSAPKCS,
		"sha512": scheme.SHA512RSAPKCS}
	got := SignMechanisms()
	if len(got) != len(wantCLI) {
		t.Fatal(got)
	}
	for _, m := range got {
		if wantCLI[m.Name] != m.Wire {
			t.Errorf("%s -> %v, want %v", m.Name, m.Wire, wantCLI[m.Name])
		}
	}
}

// TestMechanismFor checks each function accepts exactly the rows flagged for it.
func TestMechanismFor(t *testing.T) {
	for _, flag := range []uint{CKF_SIGN, CKF_VERIFY, CKF_DIGEST, CKF_GENERATE_KEY_PAIR} {
		n := 0
		for _, m := range mechanisms {
			got, err := mechanismFor(Mechanism{Type: m.typ}, flag)
			if m.info.Flags&flag == 0 {
				if !errors.Is(err, ErrMechanismInvalid) {
					t.Errorf("%s for flag %#x: %v", m.name, flag, err)
				}
				continue
			}
			n++
			if err != nil || got.typ != m.typ {
				t.Errorf("%s for flag %#x: %v", m.name, flag, err)
			}
			if _, err := mechanismFor(Mechanism{Type: m.typ, Param: []byte{0}}, flag); !errors.Is(err, ErrMechanismParamInvalid) {
				t.Errorf("%s with a parameter: %v", m.name, err)
			}
		}
		if n == 0 {
			t.Errorf("no mechanism for flag %#x", flag)
		}
		if _, err := mechanismFor(Mechanism{Type: CKM_EDDSA}, flag); !errors.Is(err, ErrMechanismInvalid) {
			t.Errorf("CKM_EDDSA for flag %#x: %v", flag, err)
		}
	}
}
