package client

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/dnspolicy/dnspolicytest"
	"github.com/tchsm/tchsm/scheme"
)

// newPolicyCluster is newMemCluster with a signing policy on some nodes: policy(i) is node i's.
func newPolicyCluster(t *testing.T, k, n int, policy func(i int) *config.SigningPolicy) *memCluster {
	t.Helper()
	mc := startMem(t, k, n, nil, policy)
	mc.dealRSA(t, "zsk-example")
	return mc
}

// refusals sums the nodes' tchsm_node_policy_refusals_total for reason.
func (mc *memCluster) refusals(t *testing.T, reason string) int {
	return mc.counter(t, "tchsm_node_policy_refusals_total", "reason", reason)
}

func (mc *memCluster) signMsg(t *testing.T, c *Client, mech scheme.Mechanism, msg []byte) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return c.Sign(ctx, mc.key.ID, mech, msg)
}

// A 3-of-5 cluster whose nodes 1 and 2 (k−1 of them) have no policy and accept everything:
// a forged RRSIG valid for twenty years is refused, with ErrPolicyRefused, and no refusing
// node is marked failing; one within the limits signs and verifies; CKM_RSA_PKCS on the key is
// refused; a policy allowing only example.test refuses other.test.
func TestMemPolicyRefusesWithKMinusOneLaxNodes(t *testing.T) {
	strict := &config.SigningPolicy{Default: &config.KeyPolicy{Zones: []string{"example.test"}}}
	mc := newPolicyCluster(t, 3, 5, func(i int) *config.SigningPolicy {
		if i <= 2 {
			return nil
		}
		return strict
	})
	c := mc.client(t, nil)
	pub := mc.key.Public.(*rsa.PublicKey)
	now := time.Now()

	good := dnspolicytest.ZoneA(pub, "example.test", now.Add(-time.Hour), now.Add(14*24*time.Hour))
	for range 3 { // several times, so that every node is asked
		sig, err := mc.signMsg(t, c, scheme.SHA256RSAPKCS, good)
		if err != nil {
			t.Fatalf("an RRSIG within the policy: %v", err)
		}
		h := sha256.Sum256(good)
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig); err != nil {
			t.Fatal(err)
		}
	}

	forged := dnspolicytest.ZoneA(pub, "example.test", now.Add(-time.Hour), now.Add(20*365*24*time.Hour))
	for range 3 {
		_, err := mc.signMsg(t, c, scheme.SHA256RSAPKCS, forged)
		if !errors.Is(err, ErrPolicyRefused) || !strings.Contains(err.Error(), "validity") {
			t.Fatalf("twenty years: err = %v, want ErrPolicyRefused for validity", err)
		}
	}
	if got := mc.refusals(t, "validity"); got < 3 {
		t.Fatalf("%d validity refusals counted", got)
	}
	for id, st := range c.NodeStats() {
		if st.LastErr != "" {
			t.Errorf("node %s marked failing after a refusal: %s", id, st.LastErr)
		}
	}

	other := dnspolicytest.ZoneA(pub, "other.test", now.Add(-time.Hour), now.Add(14*24*time.Hour))
	if _, err := mc.signMsg(t, c, scheme.SHA256RSAPKCS, other); !errors.Is(err, ErrPolicyRefused) || !strings.Contains(err.Error(), "zone") {
		t.Fatalf("other.test: err = %v", err)
	}
	// CKM_RSA_PKCS over the DigestInfo of the good RRSIG: digest only, refused.
	h := sha256.Sum256(good)
	di := append([]byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}, h[:]...)
	if _, err := mc.signMsg(t, c, scheme.RSAPKCS, di); !errors.Is(err, ErrPolicyRefused) || !strings.Contains(err.Error(), "digest_only") {
		t.Fatalf("CKM_RSA_PKCS: err = %v", err)
	}
	if _, err := mc.signMsg(t, c, scheme.SHA1RSAPKCS, good); !errors.Is(err, ErrPolicyRefused) {
		t.Fatalf("SHA-1: err = %v", err)
	}
	// A signature within the policy still signs after all those refusals.
	if _, err := mc.signMsg(t, c, scheme.SHA256RSAPKCS, good); err != nil {
		t.Fatalf("after the refusals: %v", err)
	}
}

// Two of five nodes refusing a 3-of-5 signature do not stop it: the client asks the others.
func TestMemPolicyMinorityRefusalSigns(t *testing.T) {
	strict := &config.SigningPolicy{Default: &config.KeyPolicy{Zones: []string{"example.test"}}}
	mc := newPolicyCluster(t, 3, 5, func(i int) *config.SigningPolicy {
		if i >= 4 {
			return strict
		}
		return nil
	})
	c := mc.client(t, nil)
	pub := mc.key.Public.(*rsa.PublicKey)
	now := time.Now()
	other := dnspolicytest.ZoneA(pub, "other.test", now.Add(-time.Hour), now.Add(14*24*time.Hour))
	for range 4 {
		if _, err := mc.signMsg(t, c, scheme.SHA256RSAPKCS, other); err != nil {
			t.Fatalf("2 refusals of 5 in a 3-of-5 cluster: %v", err)
		}
	}
	if mc.refusals(t, "zone") == 0 {
		t.Fatal("the strict nodes were never asked")
	}
	// Messages that are not DNSSEC and digest-only requests still sign on keys without a policy
	// anywhere: the old behaviour.
	for _, mech := range []scheme.Mechanism{scheme.SHA256RSAPKCS, scheme.SHA1RSAPKCS} {
		if _, err := mc.signMsg(t, c, mech, []byte("not dnssec")); err != nil {
			t.Fatalf("%v: %v", mech, err)
		}
	}
}

// No node has a policy: every mechanism signs as before, messages over the 64 KiB the nodes
// take go digest-only.
func TestMemNoPolicyUnchanged(t *testing.T) {
	mc := newPolicyCluster(t, 2, 3, func(int) *config.SigningPolicy { return nil })
	c := mc.client(t, nil)
	for _, msg := range [][]byte{[]byte("x"), make([]byte, 64<<10), make([]byte, 64<<10+1), make([]byte, 1<<20)} {
		for _, mech := range []scheme.Mechanism{scheme.SHA256RSAPKCS, scheme.SHA512RSAPKCS, scheme.SHA1RSAPKCS} {
			sig, err := mc.signMsg(t, c, mech, msg)
			if err != nil {
				t.Fatalf("%v over %d bytes: %v", mech, len(msg), err)
			}
			k, err := c.key(context.Background(), mc.key.ID)
			if err != nil {
				t.Fatal(err)
			}
			if err := k.pk.Verify(mech, msg, sig); err != nil {
				t.Fatalf("%v over %d bytes: %v", mech, len(msg), err)
			}
		}
	}
}

// The same for an Ed25519 key, whose CKM_EDDSA signatures carry the whole message inside the
// FROST sign request: with k−1 lax nodes, a twenty-year RRSIG and one for another zone are
// refused with ErrPolicyRefused, a good one signs and verifies, a message that is no RRSIG at
// all is refused as malformed, and no refusing node counts as failing.
func TestMemPolicyEd25519(t *testing.T) {
	strict := &config.SigningPolicy{Default: &config.KeyPolicy{Zones: []string{"example.test"}}}
	mc := startMem(t, 3, 5, nil, func(i int) *config.SigningPolicy {
		if i <= 2 {
			return nil
		}
		return strict
	})
	c := mc.generateEd(t)
	pub := mc.key.Public.(ed25519.PublicKey)
	now := time.Now()

	good := dnspolicytest.ZoneA(pub, "example.test", now.Add(-time.Hour), now.Add(14*24*time.Hour))
	for range 4 {
		sig, err := mc.signMsg(t, c, scheme.EDDSA, good)
		if err != nil {
			t.Fatalf("an RRSIG within the policy: %v", err)
		}
		if !ed25519.Verify(pub, good, sig) {
			t.Fatal("signature does not verify")
		}
	}
	forged := dnspolicytest.ZoneA(pub, "example.test", now.Add(-time.Hour), now.Add(20*365*24*time.Hour))
	if _, err := mc.signMsg(t, c, scheme.EDDSA, forged); !errors.Is(err, ErrPolicyRefused) || !strings.Contains(err.Error(), "validity") {
		t.Fatalf("twenty years: err = %v, want ErrPolicyRefused for validity", err)
	}
	other := dnspolicytest.ZoneA(pub, "other.test", now.Add(-time.Hour), now.Add(14*24*time.Hour))
	if _, err := mc.signMsg(t, c, scheme.EDDSA, other); !errors.Is(err, ErrPolicyRefused) || !strings.Contains(err.Error(), "zone") {
		t.Fatalf("other.test: err = %v", err)
	}
	if _, err := mc.signMsg(t, c, scheme.EDDSA, []byte("not an RRSIG")); !errors.Is(err, ErrPolicyRefused) || !strings.Contains(err.Error(), "malformed") {
		t.Fatalf("not an RRSIG: err = %v", err)
	}
	if got := mc.refusals(t, "validity"); got < 3 {
		t.Fatalf("%d validity refusals counted, want one from each strict node", got)
	}
	for id, st := range c.NodeStats() {
		if st.LastErr != "" {
			t.Errorf("node %s marked failing after a refusal: %s", id, st.LastErr)
		}
	}
	if _, err := mc.signMsg(t, c, scheme.EDDSA, good); err != nil {
		t.Fatalf("after the refusals: %v", err)
	}
}
