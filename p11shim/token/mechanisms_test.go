package token

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/tchsm/tchsm/scheme"
)

// extraFlags are the capability flags a row has beyond its functions: the EC ones (curves over
// F_p named by OID, uncompressed points) on the ECDSA P-256 rows.
func extraFlags(m mechanismSpec) uint {
	if m.keyType == CKK_EC {
		return CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS
	}
	return 0
}

// TestMechanismTable checks the rows against each other and against scheme.Mechanism's numbering.
func TestMechanismTable(t *testing.T) {
	types := map[uint]bool{}
	cliNames := map[string]bool{}
	for _, m := range mechanisms {
		if types[m.typ] {
			t.Errorf("%s listed twice", m.name)
		}
		types[m.typ] = true
		if m.param != (m.typ == CKM_EDDSA) {
			// The module reads pParameter exactly for these (and decodes CK_EDDSA_PARAMS).
			t.Errorf("%s: param %v", m.name, m.param)
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
			if m.info.Flags != CKF_HW|CKF_SIGN|CKF_VERIFY|extraFlags(m) || !keySizesOf(m) {
				t.Errorf("%s: %+v", m.name, m)
			}
		case f&CKF_DIGEST != 0:
			if m.hash == 0 || !m.hash.Available() || m.keyType != Unavailable || m.cliName != "" || m.wire != 0 {
				t.Errorf("%s: %+v", m.name, m)
			}
		case f&CKF_GENERATE_KEY_PAIR != 0:
			if m.hash != 0 || m.cliName != "" || m.wire != 0 || f != CKF_HW|CKF_GENERATE_KEY_PAIR|extraFlags(m) || !keySizesOf(m) {
				t.Errorf("%s: %+v", m.name, m)
			}
		default:
			t.Errorf("%s: flags %#x name no function", m.name, f)
		}
	}
	// Every key type has exactly one key generation row, and every alias names one.
	for _, kt := range []uint{CKK_RSA, CKK_EC_EDWARDS, CKK_EC} {
		n := 0
		for _, m := range mechanisms {
			if m.keyType == kt && m.info.Flags&CKF_GENERATE_KEY_PAIR != 0 {
				n++
			}
		}
		if n != 1 {
			t.Errorf("key type %#x: %d key generation mechanisms", kt, n)
		}
	}
	for alias, to := range keygenAliases {
		if m := lookupMechanism(to); m == nil || m.info.Flags&CKF_GENERATE_KEY_PAIR == 0 {
			t.Errorf("alias %#x for %#x, not a key generation mechanism", alias, to)
		}
		if m := lookupMechanism(alias); m != nil && m.info.Flags&CKF_GENERATE_KEY_PAIR != 0 {
			t.Errorf("alias %#x is a key generation mechanism itself", alias)
		}
	}
}

// keySizesOf reports whether m's C_GetMechanismInfo key sizes are those of its key type.
func keySizesOf(m mechanismSpec) bool {
	switch m.keyType {
	case CKK_RSA:
		return m.info.MinKeySize == MinKeyBits && m.info.MaxKeySize == MaxKeyBits
	case CKK_EC_EDWARDS, CKK_EC:
		return m.info.MinKeySize == 256 && m.info.MaxKeySize == 256
	}
	return false
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
	if got := allowedMechanisms(CKK_EC_EDWARDS); !bytes.Equal(got, EncodeULong(CKM_EDDSA)) {
		t.Errorf("CKA_ALLOWED_MECHANISMS of an EdDSA key = %x", got)
	}
	if got := keyGenMechanism(CKK_RSA); got != CKM_RSA_PKCS_KEY_PAIR_GEN {
		t.Errorf("CKA_KEY_GEN_MECHANISM = %#x", got)
	}
	if got := keyGenMechanism(CKK_EC_EDWARDS); got != CKM_EC_EDWARDS_KEY_PAIR_GEN {
		t.Errorf("CKA_KEY_GEN_MECHANISM of an EdDSA key = %#x", got)
	}
	list := mechanismList(func(*mechanismSpec) bool { return true })
	if len(list) != len(mechanisms) {
		t.Fatal(list)
	}
	for i := 1; i < len(list); i++ {
		if list[i-1] >= list[i] {
			t.Fatalf("C_GetMechanismList not ascending: %#x", list)
		}
	}
	for _, typ := range append(list, 0x1040) {
		if TakesParam(typ) != (typ == CKM_EDDSA) {
			t.Errorf("TakesParam(%#x) = %v", typ, TakesParam(typ))
		}
	}
	wantList := []uint{CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_RSA_PKCS, CKM_SHA1_RSA_PKCS, CKM_SHA256_RSA_PKCS,
		CKM_SHA384_RSA_PKCS, CKM_SHA512_RSA_PKCS, CKM_SHA224_RSA_PKCS, CKM_SHA_1, CKM_SHA256, CKM_SHA224,
		CKM_SHA384, CKM_SHA512, CKM_EC_KEY_PAIR_GEN, CKM_ECDSA, CKM_ECDSA_SHA256, CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA}
	if fmt.Sprint(list) != fmt.Sprint(wantList) {
		t.Errorf("C_GetMechanismList = %#x, want %#x", list, wantList)
	}
	wantCLI := map[string]scheme.Mechanism{"raw": scheme.RSAPKCS, "sha1": scheme.SHA1RSAPKCS,
		"sha224": scheme.SHA224RSAPKCS, "sha256": scheme.SHA256RSAPKCS, "sha384": scheme.SHA384RSAPKCS,
		"sha512": scheme.SHA512RSAPKCS, "eddsa": scheme.EDDSA, "ecdsa": scheme.ECDSA, "ecdsa-sha256": scheme.ECDSASHA256}
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
			if _, alias := keygenAliases[m.typ]; alias && flag == CKF_GENERATE_KEY_PAIR {
				continue // below
			}
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
			_, err = mechanismFor(Mechanism{Type: m.typ, EdDSA: &EdDSAParams{}}, flag)
			if (m.typ == CKM_EDDSA) != (err == nil) {
				t.Errorf("%s with an empty CK_EDDSA_PARAMS: %v", m.name, err)
			}
		}
		if n == 0 {
			t.Errorf("no mechanism for flag %#x", flag)
		}
		// CKM_EDDSA is accepted for key generation (GnuTLS 3.7.9 asks for it) as
		// CKM_EC_EDWARDS_KEY_PAIR_GEN, for signing and verifying as itself, and nowhere else.
		got, err := mechanismFor(Mechanism{Type: CKM_EDDSA}, flag)
		switch flag {
		case CKF_GENERATE_KEY_PAIR:
			if err != nil || got.typ != CKM_EC_EDWARDS_KEY_PAIR_GEN {
				t.Errorf("CKM_EDDSA for key generation: %v %v", got, err)
			}
		case CKF_SIGN, CKF_VERIFY:
			if err != nil || got.typ != CKM_EDDSA {
				t.Errorf("CKM_EDDSA for flag %#x: %v", flag, err)
			}
		default:
			if !errors.Is(err, ErrMechanismInvalid) {
				t.Errorf("CKM_EDDSA for flag %#x: %v", flag, err)
			}
		}
	}
	for _, p := range []*EdDSAParams{{PHFlag: true}, {Context: []byte{1}}, {PHFlag: true, Context: []byte{1}}} {
		if _, err := mechanismFor(Mechanism{Type: CKM_EDDSA, EdDSA: p}, CKF_SIGN); !errors.Is(err, ErrMechanismParamInvalid) {
			t.Errorf("CKM_EDDSA with %+v: %v", p, err)
		}
	}
}
