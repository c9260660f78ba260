package trust

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"math/big"
	"testing"

	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme/shoup"
	"google.golang.org/protobuf/proto"
)

var testRSA *rsa.PrivateKey

// testRecord returns a structurally valid record over a real 1024-bit RSA modulus, with
// v and vk random in [1, N), as the dealer would produce for 3 nodes and k = 2.
func testRecord(t testing.TB) *tchsmpb.KeyRecord {
	t.Helper()
	if testRSA == nil {
		var err error
		if testRSA, err = rsa.GenerateKey(rand.Reader, 1024); err != nil {
			t.Fatal(err)
		}
	}
	n := testRSA.N
	rnd := func() []byte {
		x, err := rand.Int(rand.Reader, n)
		if err != nil {
			t.Fatal(err)
		}
		return x.Add(x, big.NewInt(1)).Mod(x, n).Bytes()
	}
	rec := &tchsmpb.KeyRecord{
		KeyId: "00112233445566778899aabbccddeeff", Label: "00112233445566778899aabbccddeeff",
		P11Id: []byte{0x00, 0x11, 0x22}, Bits: 1024, Modulus: n.Bytes(), PublicExponent: 65537,
		K: 2, N: 3, V: rnd(), Vk: [][]byte{rnd(), rnd(), rnd()}, CreatedUnix: 1_800_000_000,
		SafePrimes: false, ClusterId: "test-cluster",
	}
	return rec
}

func TestKeyRecordRoundTrip(t *testing.T) {
	c := newCluster(t)
	rec := testRecord(t)
	s, err := SignKeyRecord(c.dealer, rec)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyKeyRecord(c.m, s)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, rec) {
		t.Fatalf("verified %v, want %v", got, rec)
	}
}

func TestKeyRecordRejects(t *testing.T) {
	c := newCluster(t)
	rec := testRecord(t)
	good, err := SignKeyRecord(c.dealer, rec)
	if err != nil {
		t.Fatal(err)
	}
	clone := func() *tchsmpb.SignedKeyRecord { return proto.Clone(good).(*tchsmpb.SignedKeyRecord) }

	tamperedModulus := clone()
	{
		r := proto.Clone(rec).(*tchsmpb.KeyRecord)
		r.Modulus[len(r.Modulus)-1] ^= 2 // an attacker's modulus: the node would leak its share
		tamperedModulus.Record, _ = proto.Marshal(r)
	}
	byNode := clone()
	byNode.Dealer = "node1"
	mallorySigned, _ := SignKeyRecord(c.malloryDealer, rec)
	// node1 signs a record with its own key and claims to be a dealer: role check.
	nodeForged := clone()
	nodeForged.Dealer = "node1"
	nodeForged.Signature = signWith(c.nodes[0], "node1", nodeForged.Record)
	otherCluster := proto.Clone(rec).(*tchsmpb.KeyRecord)
	otherCluster.ClusterId = "other-cluster"
	wrongCluster, _ := SignKeyRecord(c.dealer, otherCluster)

	cases := []struct {
		name string
		s    *tchsmpb.SignedKeyRecord
		want error
	}{
		{"nil", nil, ErrBadRecord},
		{"empty", &tchsmpb.SignedKeyRecord{}, ErrBadRecord},
		{"tampered modulus", tamperedModulus, ErrBadSignature},
		{"dealer field swapped", byNode, ErrUnauthorized},
		{"signed by a node", nodeForged, ErrUnauthorized},
		{"dealer not in manifest", mallorySigned, ErrUnknownSender},
		{"wrong cluster", wrongCluster, ErrWrongCluster},
		{"signature truncated", func() *tchsmpb.SignedKeyRecord { s := clone(); s.Signature = s.Signature[:63]; return s }(), ErrBadSignature},
		{"garbage record signed", func() *tchsmpb.SignedKeyRecord {
			s := clone()
			s.Record = []byte{0xff, 0xff}
			s.Signature = signWith(c.dealer, "dealer", s.Record)
			return s
		}(), ErrMalformed},
	}
	for _, tc := range cases {
		if _, err := VerifyKeyRecord(c.m, tc.s); !errors.Is(err, tc.want) || !errors.Is(err, ErrBadRecord) {
			t.Errorf("%s: %v, want %v and ErrBadRecord", tc.name, err, tc.want)
		}
	}
	if _, err := SignKeyRecord(c.nodes[0], rec); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("node signing a record: %v", err)
	}
}

// signWith signs record bytes with id's key in the name of dealer, as a forger would.
func signWith(id *Identity, dealer string, record []byte) []byte {
	return ed25519.Sign(id.SignKey, recordSigningInput(dealer, record))
}

func TestCheckKeyRecord(t *testing.T) {
	cases := map[string]func(r *tchsmpb.KeyRecord){
		"key id upper case": func(r *tchsmpb.KeyRecord) { r.KeyId = "00112233445566778899AABBCCDDEEFF" },
		"key id short":      func(r *tchsmpb.KeyRecord) { r.KeyId = "0011" },
		"no cluster":        func(r *tchsmpb.KeyRecord) { r.ClusterId = "" },
		"bits mismatch":     func(r *tchsmpb.KeyRecord) { r.Bits = 2048 },
		"modulus one bit short": func(r *tchsmpb.KeyRecord) {
			r.Modulus = new(big.Int).Rsh(new(big.Int).SetBytes(r.Modulus), 1).Bytes()
		},
		"even modulus":    func(r *tchsmpb.KeyRecord) { r.Modulus[len(r.Modulus)-1] &^= 1 },
		"k = 0":           func(r *tchsmpb.KeyRecord) { r.K = 0 },
		"k > n":           func(r *tchsmpb.KeyRecord) { r.K = 4 },
		"n = 65":          func(r *tchsmpb.KeyRecord) { r.N = 65 },
		"vk count":        func(r *tchsmpb.KeyRecord) { r.Vk = r.Vk[:2] },
		"e even":          func(r *tchsmpb.KeyRecord) { r.PublicExponent = 65536 },
		"e <= n":          func(r *tchsmpb.KeyRecord) { r.PublicExponent = 3; r.N = 3; r.K = 2 },
		"v zero":          func(r *tchsmpb.KeyRecord) { r.V = nil },
		"vk >= N":         func(r *tchsmpb.KeyRecord) { r.Vk[1] = r.Modulus },
		"label too long":  func(r *tchsmpb.KeyRecord) { r.Label = string(make([]byte, MaxLabelLen+1)) },
		"CKA_ID too long": func(r *tchsmpb.KeyRecord) { r.P11Id = make([]byte, MaxP11IDLen+1) },
	}
	for name, mutate := range cases {
		r := proto.Clone(testRecord(t)).(*tchsmpb.KeyRecord)
		mutate(r)
		if err := CheckKeyRecord(r); !errors.Is(err, ErrBadRecord) {
			t.Errorf("%s: %v, want ErrBadRecord", name, err)
		}
	}
	if err := CheckKeyRecord(nil); !errors.Is(err, ErrBadRecord) {
		t.Error("nil record accepted")
	}
}

func TestPublicKey(t *testing.T) {
	rec := testRecord(t)
	spk, err := PublicKey(rec)
	if err != nil {
		t.Fatal(err)
	}
	pk := spk.(*shoup.PublicKey)
	if pk.N.BitLen() != 1024 || pk.E != 65537 || pk.K != 2 || pk.L != 3 || len(pk.VK) != 3 {
		t.Fatalf("public key %+v", pk)
	}
	for name, mutate := range map[string]func(*tchsmpb.KeyRecord){
		"bits mismatch":  func(r *tchsmpb.KeyRecord) { r.Bits = 2048 },
		"huge exponent":  func(r *tchsmpb.KeyRecord) { r.PublicExponent = 1 << 31 },
		"huge n":         func(r *tchsmpb.KeyRecord) { r.N = 1 << 20 },
		"k > n":          func(r *tchsmpb.KeyRecord) { r.K = 4 },
		"missing vk":     func(r *tchsmpb.KeyRecord) { r.Vk = r.Vk[:2] },
		"even modulus":   func(r *tchsmpb.KeyRecord) { r.Modulus = new(big.Int).Lsh(testRSA.N, 1).Bytes(); r.Bits = 1025 },
		"exponent not n": func(r *tchsmpb.KeyRecord) { r.PublicExponent = 3; r.N = 5; r.Vk = append(r.Vk, r.Vk[0], r.Vk[0]) },
	} {
		r := proto.Clone(rec).(*tchsmpb.KeyRecord)
		mutate(r)
		if _, err := PublicKey(r); !errors.Is(err, ErrBadRecord) {
			t.Errorf("%s: err = %v, want ErrBadRecord", name, err)
		}
	}
}
