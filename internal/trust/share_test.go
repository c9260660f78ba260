package trust

import (
	"bytes"
	"errors"
	"testing"

	tchsmpb "github.com/tchsm/tchsm/proto"
	"google.golang.org/protobuf/proto"
)

const keyA = "00112233445566778899aabbccddeeff"
const keyB = "ffeeddccbbaa99887766554433221100"

func TestShareRoundTrip(t *testing.T) {
	c := newCluster(t)
	share := &tchsmpb.KeyShare{KeyId: keyA, Index: 1, S: bytes.Repeat([]byte{0xa5}, 256)}
	enc, ct, err := EncryptShare(c.m.Nodes[0], c.m.ClusterID, keyA, share)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, share.S[:16]) {
		t.Fatal("ciphertext contains the share in the clear")
	}
	got, err := DecryptShare(c.nodes[0], c.m.ClusterID, keyA, enc, ct)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, share) {
		t.Fatalf("decrypted %d-byte share differs", len(got.S))
	}
	// Two encryptions of one share differ (fresh ephemeral key each time).
	enc2, ct2, _ := EncryptShare(c.m.Nodes[0], c.m.ClusterID, keyA, share)
	if bytes.Equal(enc, enc2) || bytes.Equal(ct, ct2) {
		t.Fatal("HPKE encryption is deterministic")
	}
}

func TestShareRejects(t *testing.T) {
	c := newCluster(t)
	share := &tchsmpb.KeyShare{KeyId: keyA, Index: 1, S: bytes.Repeat([]byte{0x5a}, 128)}
	enc, ct, err := EncryptShare(c.m.Nodes[0], c.m.ClusterID, keyA, share)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 1; return b }
	cases := []struct {
		name      string
		id        *Identity
		cluster   string
		keyID     string
		enc, ct   []byte
		wantError error
	}{
		{"node2 opens node1's share", c.nodes[1], c.m.ClusterID, keyA, enc, ct, ErrShareDecrypt},
		{"mallory opens it", c.mallory, c.m.ClusterID, keyA, enc, ct, ErrShareDecrypt},
		{"replayed as another key", c.nodes[0], c.m.ClusterID, keyB, enc, ct, ErrShareDecrypt},
		{"replayed into another cluster", c.nodes[0], "other-cluster", keyA, enc, ct, ErrShareDecrypt},
		{"ciphertext flipped", c.nodes[0], c.m.ClusterID, keyA, enc, flip(ct, 3), ErrShareDecrypt},
		{"tag flipped", c.nodes[0], c.m.ClusterID, keyA, enc, flip(ct, len(ct)-1), ErrShareDecrypt},
		{"enc flipped", c.nodes[0], c.m.ClusterID, keyA, flip(enc, 0), ct, ErrShareDecrypt},
		{"enc truncated", c.nodes[0], c.m.ClusterID, keyA, enc[:31], ct, ErrShareDecrypt},
		{"ct empty", c.nodes[0], c.m.ClusterID, keyA, enc, nil, ErrShareDecrypt},
		{"no identity", nil, c.m.ClusterID, keyA, enc, ct, ErrInvalidIdentity},
	}
	for _, tc := range cases {
		got, err := DecryptShare(tc.id, tc.cluster, tc.keyID, tc.enc, tc.ct)
		if !errors.Is(err, tc.wantError) || got != nil {
			t.Errorf("%s: %v, %v; want %v", tc.name, got != nil, err, tc.wantError)
		}
	}
	// A share whose plaintext names another key is refused even when the HPKE context matches.
	wrongInside := &tchsmpb.KeyShare{KeyId: keyB, Index: 1, S: []byte{1}}
	if _, _, err := EncryptShare(c.m.Nodes[0], c.m.ClusterID, keyA, wrongInside); err == nil {
		t.Error("EncryptShare accepted a share of another key")
	}
	if _, _, err := EncryptShare(c.m.Clients[0], c.m.ClusterID, keyA, share); err == nil {
		t.Error("EncryptShare to a client")
	}
	if _, _, err := EncryptShare(c.m.Nodes[0], c.m.ClusterID, "not-a-key-id", &tchsmpb.KeyShare{KeyId: "not-a-key-id", S: []byte{1}}); err == nil {
		t.Error("EncryptShare with a malformed key id")
	}
}
