package trust

import (
	"bytes"
	"errors"
	"testing"

	tchsmpb "github.com/tchsm/tchsm/proto"
)

// A PIN sealed for one node, client, cluster and purpose opens only there, and both ends derive
// the same session key, which a replay of the ciphertext does not give to anyone else.
func TestSealOpenPIN(t *testing.T) {
	c := newCluster(t)
	node := c.m.Nodes[0]
	enc, ct, key, err := SealPIN(node, c.m.ClusterID, "alice", PINPurposeLogin, &tchsmpb.PINSecret{Pin: []byte("1234")})
	if err != nil {
		t.Fatal(err)
	}
	sec, key2, err := OpenPIN(c.nodes[0], c.m.ClusterID, "alice", PINPurposeLogin, enc, ct)
	if err != nil {
		t.Fatal(err)
	}
	if string(sec.Pin) != "1234" || sec.IssuedAt == 0 || len(sec.Nonce) != 16 || !bytes.Equal(key, key2) || len(key) != SessionKeySize {
		t.Fatalf("opened %v, keys equal %v", sec.IssuedAt, bytes.Equal(key, key2))
	}
	for name, open := range map[string]func() error{
		"other node": func() error {
			_, _, err := OpenPIN(c.nodes[1], c.m.ClusterID, "alice", PINPurposeLogin, enc, ct)
			return err
		},
		"other client": func() error {
			_, _, err := OpenPIN(c.nodes[0], c.m.ClusterID, "bob", PINPurposeLogin, enc, ct)
			return err
		},
		"other cluster": func() error { _, _, err := OpenPIN(c.nodes[0], "other", "alice", PINPurposeLogin, enc, ct); return err },
		"other purpose": func() error {
			_, _, err := OpenPIN(c.nodes[0], c.m.ClusterID, "alice", PINPurposeChange, enc, ct)
			return err
		},
		"tampered": func() error {
			bad := bytes.Clone(ct)
			bad[0] ^= 1
			_, _, err := OpenPIN(c.nodes[0], c.m.ClusterID, "alice", PINPurposeLogin, enc, bad)
			return err
		},
		"empty": func() error {
			_, _, err := OpenPIN(c.nodes[0], c.m.ClusterID, "alice", PINPurposeLogin, nil, nil)
			return err
		},
	} {
		if err := open(); !errors.Is(err, ErrPINDecrypt) {
			t.Errorf("%s: %v, want ErrPINDecrypt", name, err)
		}
	}
	if _, _, _, err := SealPIN(c.m.Clients[0], c.m.ClusterID, "alice", PINPurposeLogin, &tchsmpb.PINSecret{}); err == nil {
		t.Error("sealed a PIN to a client")
	}
	// The MAC binds the session, the type and the body.
	s := []byte("0123456789abcdef")
	mac := LoginMAC(key, s, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, []byte("body"))
	if !CheckLoginMAC(key2, s, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, []byte("body"), mac) {
		t.Fatal("MAC does not check")
	}
	if CheckLoginMAC(key2, s, tchsmpb.BodyType_BODY_TYPE_SIGN_BATCH, []byte("body"), mac) ||
		CheckLoginMAC(key2, s, tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, []byte("bodx"), mac) ||
		CheckLoginMAC(key2, []byte("0123456789abcdeX"), tchsmpb.BodyType_BODY_TYPE_SIGN_REQUEST, []byte("body"), mac) {
		t.Fatal("MAC checks for another session, type or body")
	}
}

// FuzzOpenPIN: arbitrary ciphertexts never panic and fail with ErrPINDecrypt.
func FuzzOpenPIN(f *testing.F) {
	c := getFuzzCluster(f)
	enc, ct, _, err := SealPIN(c.m.Nodes[0], c.m.ClusterID, "alice", PINPurposeLogin, &tchsmpb.PINSecret{Pin: []byte("1234")})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc, ct)
	f.Add([]byte{}, []byte{1})
	f.Fuzz(func(t *testing.T, enc, ct []byte) {
		sec, _, err := OpenPIN(c.nodes[0], c.m.ClusterID, "alice", PINPurposeLogin, enc, ct)
		if err != nil && !errors.Is(err, ErrPINDecrypt) {
			t.Fatalf("error %v does not wrap ErrPINDecrypt", err)
		}
		if err == nil && len(sec.Nonce) != 16 {
			t.Fatal("opened a secret without its nonce")
		}
	})
}
