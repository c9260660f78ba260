package frost

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"filippo.io/edwards25519"
)

// readVectors parses testdata in the RFC's layout: "name: value" lines, a value continued on the
// lines that follow it (they have no ": "), comments and blank lines skipped.
func readVectors(t testing.TB, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v := map[string]string{}
	last := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "//"):
			last = ""
		case strings.Contains(line, ": "):
			k, val, _ := strings.Cut(line, ": ")
			v[k], last = val, k
		case last != "":
			v[last] += line
		default:
			t.Fatalf("stray line %q", line)
		}
	}
	return v
}

func unhex(t testing.TB, v map[string]string, k string) []byte {
	t.Helper()
	s, ok := v[k]
	if !ok {
		t.Fatalf("vector %q missing", k)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("%s: %v", k, err)
	}
	return b
}

// TestRFC9591Vectors runs RFC 9591 Appendix E.1 byte for byte: the key shares from the
// polynomial, nonce_generate from the given randomness, commitments, binding factor inputs and
// factors, signature shares, each share against its verification share, and the aggregate,
// which must also verify with crypto/ed25519.
func TestRFC9591Vectors(t *testing.T) {
	v := readVectors(t, "testdata/rfc9591-e1-ed25519-sha512.txt")
	if v["participant_list"] != "1,3" || v["MAX_PARTICIPANTS"] != "3" || v["MIN_PARTICIPANTS"] != "2" {
		t.Fatalf("unexpected configuration %v", v)
	}
	sk, err := DecodeScalar(unhex(t, v, "group_secret_key"))
	if err != nil {
		t.Fatal(err)
	}
	pk := unhex(t, v, "group_public_key")
	if got := new(edwards25519.Point).ScalarBaseMult(sk).Bytes(); !bytes.Equal(got, pk) {
		t.Fatalf("group public key %x", got)
	}
	a1, err := DecodeScalar(unhex(t, v, "share_polynomial_coefficients[1]"))
	if err != nil {
		t.Fatal(err)
	}
	msg := unhex(t, v, "message")
	shares := map[int]*edwards25519.Scalar{}
	for i, name := range []string{"P1", "P2", "P3"} {
		s, err := DecodeScalar(unhex(t, v, name+" participant_share"))
		if err != nil {
			t.Fatal(err)
		}
		// f(x) = sk + a1·x
		want := new(edwards25519.Scalar).MultiplyAdd(a1, identifierScalar(i+1), sk)
		if want.Equal(s) != 1 {
			t.Fatalf("%s share is not f(%d)", name, i+1)
		}
		shares[i+1] = s
	}

	ids := []int{1, 3}
	var list []Commitment
	nonces := map[int]*Nonces{}
	for _, id := range ids {
		p := "P" + string(rune('0'+id)) + " "
		rnd := append(unhex(t, v, p+"hiding_nonce_randomness"), unhex(t, v, p+"binding_nonce_randomness")...)
		n, D, E, err := commit(bytes.NewReader(rnd), shares[id])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(n.hiding.Bytes(), unhex(t, v, p+"hiding_nonce")) || !bytes.Equal(n.binding.Bytes(), unhex(t, v, p+"binding_nonce")) {
			t.Fatalf("%snonces differ", p)
		}
		if !bytes.Equal(D.Bytes(), unhex(t, v, p+"hiding_nonce_commitment")) || !bytes.Equal(E.Bytes(), unhex(t, v, p+"binding_nonce_commitment")) {
			t.Fatalf("%scommitments differ", p)
		}
		c, err := NewCommitment(id, 0, D.Bytes(), E.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, c)
		nonces[id] = n
	}
	if err := CheckList(list, 2, 3); err != nil {
		t.Fatal(err)
	}
	inputs := bindingFactorInputs(pk, list, msg)
	s, err := newSession(pk, list, msg)
	if err != nil {
		t.Fatal(err)
	}
	var z []*edwards25519.Scalar
	for i, id := range ids {
		p := "P" + string(rune('0'+id)) + " "
		if !bytes.Equal(inputs[i], unhex(t, v, p+"binding_factor_input")) {
			t.Fatalf("%sbinding factor input %x", p, inputs[i])
		}
		if !bytes.Equal(s.rho[i].Bytes(), unhex(t, v, p+"binding_factor")) {
			t.Fatalf("%sbinding factor %x", p, s.rho[i].Bytes())
		}
		zi := s.sign(i, shares[id], nonces[id])
		if !bytes.Equal(zi.Bytes(), unhex(t, v, p+"sig_share")) {
			t.Fatalf("%ssig share %x", p, zi.Bytes())
		}
		y := new(edwards25519.Point).ScalarBaseMult(shares[id])
		if !s.verifyShare(i, y, zi) {
			t.Fatalf("%sshare does not verify", p)
		}
		if s.verifyShare(i, y, new(edwards25519.Scalar).Add(zi, identifierScalar(1))) {
			t.Fatalf("%sa wrong share verifies", p)
		}
		z = append(z, zi)
	}
	sig := s.aggregate(z)
	if !bytes.Equal(sig, unhex(t, v, "sig")) {
		t.Fatalf("signature %x", sig)
	}
	if !ed25519.Verify(ed25519.PublicKey(pk), msg, sig) {
		t.Fatal("crypto/ed25519 rejects the RFC's signature")
	}
}
