package nodetest

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"math/big"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/trust"
	tchsmpb "github.com/tchsm/tchsm/proto"
	"github.com/tchsm/tchsm/scheme/shoup"
)

// Ctx returns a context that ends after d or with the test.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// RecordKey verifies a signed key record of an RSA key against m and returns it with its
// public key.
func RecordKey(t testing.TB, m *trust.Manifest, s *tchsmpb.SignedKeyRecord) (*tchsmpb.KeyRecord, *shoup.PublicKey) {
	t.Helper()
	rec, err := trust.VerifyKeyRecord(m, s)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := trust.PublicKey(rec)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, ok := pk.(*shoup.PublicKey)
	if !ok {
		t.Fatalf("key %s is a %v key, not RSA", rec.GetKeyId(), pk.Algorithm())
	}
	return rec, rsaKey
}

// SignWith asks the given nodes for shares (with proofs) of the SHA-256 PKCS#1 v1.5 signature
// of msg, checks each share's index and proof, combines them and verifies the signature with
// crypto/rsa. It returns the signature.
func SignWith(t testing.TB, client *Peer, pk *shoup.PublicKey, keyID string, msg []byte, nodes ...int) []byte {
	t.Helper()
	digest := sha256.Sum256(msg)
	payload, err := shoup.DigestInfo(crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	em, err := shoup.EncodePayload(pk.Size(), payload)
	if err != nil {
		t.Fatal(err)
	}
	var shares []*shoup.SigShare
	for _, i := range nodes {
		op, err := client.CallNode(Ctx(t, 10*time.Second), i, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST,
			&tchsmpb.SignRequest{KeyId: keyID, Payload: payload, WantProof: true})
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		ss := op.Message.(*tchsmpb.SignatureShare)
		share := &shoup.SigShare{Index: int(ss.Index), X: new(big.Int).SetBytes(ss.X)}
		if share.Index != i || ss.KeyId != keyID {
			t.Fatalf("node %d answered index %d key %s", i, share.Index, ss.KeyId)
		}
		proof := &shoup.Proof{C: new(big.Int).SetBytes(ss.Proof.GetC()), Z: new(big.Int).SetBytes(ss.Proof.GetZ())}
		if err := shoup.VerifyShare(pk, em, share, proof); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		shares = append(shares, share)
	}
	sig, err := shoup.Combine(pk, em, shares)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(pk.RSA(), crypto.SHA256, digest[:], sig); err != nil {
		t.Fatalf("crypto/rsa rejects the combined signature: %v", err)
	}
	return sig
}
