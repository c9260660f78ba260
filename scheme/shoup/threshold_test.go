package shoup

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/tchsm/tchsm/scheme"
)

// keyCache shares test keys between tests of one run.
var keyCache sync.Map

// testKey returns a key of bits bits: for 1024 and 2048 bits, from the safe primes in
// testdata/safeprimes.json (the search for safe primes is package keygen's, tested there); for
// other sizes, which only benchmarks use, an ordinary crypto/rsa key (a share costs the same).
func testKey(t testing.TB, bits int) *Key {
	t.Helper()
	if k, ok := keyCache.Load(bits); ok {
		return k.(*Key)
	}
	var k *Key
	b, err := os.ReadFile("testdata/safeprimes.json")
	if err != nil {
		t.Fatal(err)
	}
	var primes map[string][2]string
	if err := json.Unmarshal(b, &primes); err != nil {
		t.Fatal(err)
	}
	if pq, ok := primes[strconv.Itoa(bits)]; ok {
		p, _ := new(big.Int).SetString(pq[0], 16)
		q, _ := new(big.Int).SetString(pq[1], 16)
		if k, err = NewKeyFromPrimes(p, q, DefaultE); err != nil || !k.Safe || k.N.BitLen() != bits {
			t.Fatalf("testdata primes for %d bits: %v", bits, err)
		}
	} else {
		priv, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		if k, _, err = FromRSA(priv); err != nil {
			t.Fatal(err)
		}
	}
	actual, _ := keyCache.LoadOrStore(bits, k)
	return actual.(*Key)
}

func dealt(t testing.TB, bits, k, n int) (*Key, *PublicKey, []*KeyShare) {
	t.Helper()
	key := testKey(t, bits)
	pk, shares, err := Deal(rand.Reader, key, k, n)
	if err != nil {
		t.Fatalf("Deal(%d of %d): %v", k, n, err)
	}
	return key, pk, shares
}

func encode(t testing.TB, pk *PublicKey, mech scheme.Mechanism, msg []byte) []byte {
	t.Helper()
	payload, err := Payload(mech, msg)
	if err != nil {
		t.Fatal(err)
	}
	em, err := EncodePayload(pk.Size(), payload)
	if err != nil {
		t.Fatal(err)
	}
	return em
}

func signWith(t testing.TB, pk *PublicKey, shares []*KeyShare, idx []int, em []byte) []*SigShare {
	t.Helper()
	var out []*SigShare
	for _, i := range idx {
		ss, err := SignShare(pk, shares[i-1], em)
		if err != nil {
			t.Fatalf("SignShare(node %d): %v", i, err)
		}
		out = append(out, ss)
	}
	return out
}

func TestRoundTripMatchesCryptoRSA(t *testing.T) {
	msg := []byte("example.test. 3600 IN SOA ns1.example.test. hostmaster.example.test. 1 3600 900 604800 300")
	digest := sha256.Sum256(msg)
	for _, bits := range []int{1024, 2048} {
		for _, kn := range [][2]int{{1, 1}, {2, 3}, {3, 5}, {5, 7}} {
			k, n := kn[0], kn[1]
			t.Run(fmt.Sprintf("%d/%dof%d", bits, k, n), func(t *testing.T) {
				key, pk, shares := dealt(t, bits, k, n)
				if pk.N.BitLen() != bits {
					t.Fatalf("modulus has %d bits, want %d", pk.N.BitLen(), bits)
				}
				want, err := rsa.SignPKCS1v15(nil, key.RSA(), crypto.SHA256, digest[:])
				if err != nil {
					t.Fatal(err)
				}
				em := encode(t, pk, scheme.SHA256RSAPKCS, msg)
				// The last k nodes, so that the subset is not always 1..k.
				var idx []int
				for i := n - k + 1; i <= n; i++ {
					idx = append(idx, i)
				}
				sig, err := Combine(pk, em, signWith(t, pk, shares, idx, em))
				if err != nil {
					t.Fatalf("Combine: %v", err)
				}
				if !bytes.Equal(sig, want) {
					t.Fatalf("threshold signature differs from crypto/rsa's")
				}
				if err := rsa.VerifyPKCS1v15(pk.RSA(), crypto.SHA256, digest[:], sig); err != nil {
					t.Fatalf("VerifyPKCS1v15: %v", err)
				}
				if err := Verify(pk, em, sig); err != nil {
					t.Fatalf("Verify: %v", err)
				}
			})
		}
	}
}

func TestEverySubsetSigns(t *testing.T) {
	for _, kn := range [][2]int{{2, 4}, {3, 5}, {4, 6}} {
		k, n := kn[0], kn[1]
		key, pk, shares := dealt(t, 1024, k, n)
		msg := []byte("every subset")
		digest := sha256.Sum256(msg)
		want, _ := rsa.SignPKCS1v15(nil, key.RSA(), crypto.SHA256, digest[:])
		em := encode(t, pk, scheme.SHA256RSAPKCS, msg)
		all := signWith(t, pk, shares, seq(1, n), em)
		idx := seq(0, k-1)
		count := 0
		for ok := true; ok; ok = nextSubset(idx, n) {
			set := make([]*SigShare, k)
			for i, j := range idx {
				set[i] = all[j]
			}
			sig, err := Combine(pk, em, set)
			if err != nil || !bytes.Equal(sig, want) {
				t.Fatalf("%d of %d, subset %v: err=%v equal=%v", k, n, idx, err, bytes.Equal(sig, want))
			}
			count++
		}
		if want := binom(n, k); count != want {
			t.Fatalf("tried %d subsets, want %d", count, want)
		}
	}
}

func seq(a, b int) []int {
	var s []int
	for i := a; i <= b; i++ {
		s = append(s, i)
	}
	return s
}

func binom(n, k int) int { return int(new(big.Int).Binomial(int64(n), int64(k)).Int64()) }

func TestMechanismsMatchCryptoRSA(t *testing.T) {
	key, pk, shares := dealt(t, 2048, 2, 3)
	msg := []byte("hash and sign")
	for _, mech := range []scheme.Mechanism{scheme.SHA1RSAPKCS, scheme.SHA224RSAPKCS, scheme.SHA256RSAPKCS, scheme.SHA384RSAPKCS, scheme.SHA512RSAPKCS} {
		h, _ := mech.Hash()
		hh := h.New()
		hh.Write(msg)
		want, err := rsa.SignPKCS1v15(nil, key.RSA(), h, hh.Sum(nil))
		if err != nil {
			t.Fatal(err)
		}
		em := encode(t, pk, mech, msg)
		sig, err := Combine(pk, em, signWith(t, pk, shares, []int{1, 3}, em))
		if err != nil || !bytes.Equal(sig, want) {
			t.Fatalf("%v: err=%v, equal=%v", mech, err, bytes.Equal(sig, want))
		}
	}
	// CKM_RSA_PKCS with a caller-built DigestInfo is the same as crypto/rsa with hash 0 over it.
	d := sha256.Sum256(msg)
	di, _ := DigestInfo(crypto.SHA256, d[:])
	want, _ := rsa.SignPKCS1v15(nil, key.RSA(), 0, di)
	em := encode(t, pk, scheme.RSAPKCS, di)
	sig, err := Combine(pk, em, signWith(t, pk, shares, []int{2, 3}, em))
	if err != nil || !bytes.Equal(sig, want) {
		t.Fatalf("RSA_PKCS: err=%v, equal=%v", err, bytes.Equal(sig, want))
	}
}

func TestTamperedShareIsDetectedAndAttributed(t *testing.T) {
	_, pk, shares := dealt(t, 2048, 3, 5)
	em := encode(t, pk, scheme.SHA256RSAPKCS, []byte("tamper"))
	all := signWith(t, pk, shares, seq(1, 5), em)
	// Node 2 lies: it returns its share multiplied by 2.
	liar := &SigShare{Index: 2, X: new(big.Int).Mod(new(big.Int).Lsh(all[1].X, 1), pk.N)}
	set := []*SigShare{all[0], liar, all[2], all[3], all[4]}
	if _, err := Combine(pk, em, set); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("Combine with a lying node: err=%v, want ErrBadSignature", err)
	}
	// Proofs name the liar and clear the others.
	var named []int
	for _, s := range set {
		honest := shares[s.Index-1]
		proof, err := Prove(rand.Reader, pk, honest, em, s)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyShare(pk, em, s, proof); err != nil {
			if !errors.Is(err, ErrBadShare) {
				t.Fatalf("VerifyShare: %v", err)
			}
			named = append(named, s.Index)
		}
	}
	if fmt.Sprint(named) != "[2]" {
		t.Fatalf("proofs named %v, want [2]", named)
	}
	// Without proofs, other subsets recover a valid signature.
	sig, err := CombineAny(pk, em, set)
	if err != nil {
		t.Fatalf("CombineAny: %v", err)
	}
	if err := Verify(pk, em, sig); err != nil {
		t.Fatal(err)
	}
	// A proof made for an honest share does not vouch for a tampered one, and a proof cannot be
	// moved to another message or node.
	proof, _ := Prove(rand.Reader, pk, shares[1], em, all[1])
	if err := VerifyShare(pk, em, liar, proof); !errors.Is(err, ErrBadShare) {
		t.Fatalf("proof of honest share accepted for tampered share: %v", err)
	}
	em2 := encode(t, pk, scheme.SHA256RSAPKCS, []byte("other message"))
	if err := VerifyShare(pk, em2, all[1], proof); !errors.Is(err, ErrBadShare) {
		t.Fatalf("proof accepted for another message: %v", err)
	}
	moved := &SigShare{Index: 3, X: all[1].X}
	if err := VerifyShare(pk, em, moved, proof); !errors.Is(err, ErrBadShare) {
		t.Fatalf("proof accepted for another node: %v", err)
	}
	tweaked := &Proof{C: proof.C, Z: new(big.Int).Add(proof.Z, big.NewInt(1))}
	if err := VerifyShare(pk, em, all[1], tweaked); !errors.Is(err, ErrBadShare) {
		t.Fatalf("tweaked proof accepted: %v", err)
	}
}

func TestSharesOfAnotherKeyOrMessageFail(t *testing.T) {
	_, pk, shares := dealt(t, 1024, 2, 3)
	_, pk2, shares2 := dealt(t, 1024, 2, 3) // same N, fresh polynomial: shares do not mix
	em := encode(t, pk, scheme.SHA256RSAPKCS, []byte("m1"))
	good := signWith(t, pk, shares, []int{1}, em)
	foreign := signWith(t, pk2, shares2, []int{2}, em)
	if _, err := Combine(pk, em, append(good, foreign...)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("mixed keys: err=%v", err)
	}
	em2 := encode(t, pk, scheme.SHA256RSAPKCS, []byte("m2"))
	other := signWith(t, pk, shares, []int{2}, em2)
	if _, err := Combine(pk, em, append(good, other...)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("mixed messages: err=%v", err)
	}
	// A different key altogether.
	k3 := testKey(t, 2048)
	pk3, shares3, _ := Deal(rand.Reader, k3, 2, 3)
	em3 := encode(t, pk3, scheme.SHA256RSAPKCS, []byte("m1"))
	if _, err := Combine(pk, em, signWith(t, pk3, shares3, []int{1, 2}, em3)); err == nil {
		t.Fatal("shares of a 2048-bit key combined under a 1024-bit key")
	}
}

func TestBadInput(t *testing.T) {
	key, pk, shares := dealt(t, 1024, 3, 5)
	em := encode(t, pk, scheme.SHA256RSAPKCS, []byte("bad input"))
	all := signWith(t, pk, shares, seq(1, 5), em)
	cases := []struct {
		name string
		err  error
		run  func() error
	}{
		{"share index 0", ErrInvalidIndex, func() error {
			_, err := SignShare(pk, &KeyShare{Index: 0, S: shares[0].S}, em)
			return err
		}},
		{"share index n+1", ErrInvalidIndex, func() error {
			_, err := SignShare(pk, &KeyShare{Index: 6, S: shares[0].S}, em)
			return err
		}},
		{"nil share", ErrInvalidIndex, func() error { _, err := SignShare(pk, nil, em); return err }},
		{"truncated share", ErrInvalidKey, func() error {
			_, err := SignShare(pk, &KeyShare{Index: 1, S: shares[0].S[1:]}, em)
			return err
		}},
		{"truncated message", ErrInvalidMessage, func() error { _, err := SignShare(pk, shares[0], em[1:]); return err }},
		{"message >= N", ErrInvalidMessage, func() error {
			_, err := SignShare(pk, shares[0], bytes.Repeat([]byte{0xff}, pk.Size()))
			return err
		}},
		{"zero message", ErrInvalidMessage, func() error { _, err := SignShare(pk, shares[0], make([]byte, pk.Size())); return err }},
		{"no shares", ErrNotEnoughShares, func() error { _, err := Combine(pk, em, nil); return err }},
		{"k-1 shares", ErrNotEnoughShares, func() error { _, err := Combine(pk, em, all[:2]); return err }},
		{"duplicate index", ErrDuplicateIndex, func() error {
			_, err := Combine(pk, em, []*SigShare{all[0], all[0], all[1]})
			return err
		}},
		{"combine index 0", ErrInvalidIndex, func() error {
			_, err := Combine(pk, em, []*SigShare{{Index: 0, X: all[0].X}, all[1], all[2]})
			return err
		}},
		{"combine index 99", ErrInvalidIndex, func() error {
			_, err := Combine(pk, em, []*SigShare{{Index: 99, X: all[0].X}, all[1], all[2]})
			return err
		}},
		{"nil sig share", ErrInvalidIndex, func() error { _, err := Combine(pk, em, []*SigShare{nil, all[1], all[2]}); return err }},
		{"share value 0", ErrBadShare, func() error {
			_, err := Combine(pk, em, []*SigShare{{Index: 1, X: new(big.Int)}, all[1], all[2]})
			return err
		}},
		{"share value N", ErrBadShare, func() error {
			_, err := Combine(pk, em, []*SigShare{{Index: 1, X: pk.N}, all[1], all[2]})
			return err
		}},
		{"share value nil", ErrBadShare, func() error {
			_, err := Combine(pk, em, []*SigShare{{Index: 1}, all[1], all[2]})
			return err
		}},
		{"k > n", ErrInvalidParams, func() error { _, _, err := Deal(rand.Reader, key, 4, 3); return err }},
		{"n = 0", ErrInvalidParams, func() error { _, _, err := Deal(rand.Reader, key, 0, 0); return err }},
		{"k = 0", ErrInvalidParams, func() error { _, _, err := Deal(rand.Reader, key, 0, 3); return err }},
		{"n too large", ErrInvalidParams, func() error { _, _, err := Deal(rand.Reader, key, 2, MaxPlayers+1); return err }},
		{"e even", ErrInvalidParams, func() error { _, err := NewKeyFromPrimes(key.P, key.Q, 65536); return err }},
		{"e not above n", ErrInvalidParams, func() error {
			k3, err := NewKeyFromPrimes(key.P, key.Q, 3)
			if err != nil {
				return err
			}
			_, _, err = Deal(rand.Reader, k3, 2, 5)
			return err
		}},
		{"p not safe", ErrNotSafePrime, func() error { _, err := NewKeyFromPrimes(big.NewInt(13), key.Q, 65537); return err }},
		{"p equals q", ErrInvalidKey, func() error { _, err := NewKeyFromPrimes(key.P, key.P, 65537); return err }},
		{"public key without VK", ErrInvalidKey, func() error {
			return (&PublicKey{N: pk.N, E: pk.E, K: 3, L: 5, V: pk.V}).Validate()
		}},
		{"public key k > n", ErrInvalidParams, func() error {
			return (&PublicKey{N: pk.N, E: pk.E, K: 6, L: 5, V: pk.V, VK: pk.VK}).Validate()
		}},
		{"public key even modulus", ErrInvalidKey, func() error {
			return (&PublicKey{N: new(big.Int).Lsh(pk.N, 1), E: pk.E, K: 3, L: 5, V: pk.V, VK: pk.VK}).Validate()
		}},
		{"verify truncated signature", ErrBadSignature, func() error {
			sig, _ := Combine(pk, em, all)
			return Verify(pk, em, sig[1:])
		}},
		{"payload too long", ErrMessageTooLong, func() error {
			_, err := EncodePayload(pk.Size(), make([]byte, pk.Size()-10))
			return err
		}},
		{"unknown mechanism", scheme.ErrUnknownMechanism, func() error { _, err := Payload(scheme.Mechanism(99), nil); return err }},
	}
	for _, c := range cases {
		if err := c.run(); !errors.Is(err, c.err) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.err)
		}
	}
	// A wiped key cannot be dealt.
	k2, _ := NewKeyFromPrimes(key.P, key.Q, 65537)
	k2.Wipe()
	if _, _, err := Deal(rand.Reader, k2, 2, 3); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Deal of wiped key: %v", err)
	}
}

func TestEncodePayloadMatchesCryptoRSA(t *testing.T) {
	// crypto/rsa.SignPKCS1v15 with hash 0 signs the raw payload: its e-th power is our EM.
	key := testKey(t, 1024)
	priv := key.RSA()
	for _, n := range []int{0, 1, 20, 51, 128 - 11} {
		payload := bytes.Repeat([]byte{0xab}, n)
		sig, err := rsa.SignPKCS1v15(nil, priv, 0, payload)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		em, err := EncodePayload(priv.Size(), payload)
		if err != nil {
			t.Fatal(err)
		}
		got := new(big.Int).Exp(new(big.Int).SetBytes(sig), big.NewInt(int64(priv.E)), priv.N)
		if !bytes.Equal(got.FillBytes(make([]byte, priv.Size())), em) {
			t.Fatalf("%d bytes: EM differs from crypto/rsa's", n)
		}
	}
}

func TestImportedKey(t *testing.T) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	key, safe, err := FromRSA(priv)
	if err != nil {
		t.Fatal(err)
	}
	if safe {
		t.Fatal("crypto/rsa's primes reported safe")
	}
	pk, shares, err := Deal(rand.Reader, key, 3, 5)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("migrated from SoftHSM")
	d := sha256.Sum256(msg)
	want, _ := rsa.SignPKCS1v15(nil, priv, crypto.SHA256, d[:])
	em := encode(t, pk, scheme.SHA256RSAPKCS, msg)
	sig, err := Combine(pk, em, signWith(t, pk, shares, []int{5, 1, 3}, em))
	if err != nil || !bytes.Equal(sig, want) {
		t.Fatalf("imported key: err=%v equal=%v", err, bytes.Equal(sig, want))
	}
	// A safe-prime key round-trips through FromRSA as safe.
	k := testKey(t, 1024)
	if _, safe, err := FromRSA(k.RSA()); err != nil || !safe {
		t.Fatalf("FromRSA(safe key): safe=%v err=%v", safe, err)
	}
	if _, _, err := FromRSA(nil); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("FromRSA(nil): %v", err)
	}
}

func TestWipe(t *testing.T) {
	key, err := NewKeyFromPrimes(testKey(t, 1024).P, testKey(t, 1024).Q, 65537)
	if err != nil {
		t.Fatal(err)
	}
	p := key.P
	key.Wipe()
	if p.Sign() != 0 || key.P != nil || key.d != nil {
		t.Fatal("secret values survive Wipe")
	}
}
