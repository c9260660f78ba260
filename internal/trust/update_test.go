package trust

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	tchsmpb "github.com/tchsm/tchsm/proto"
	"google.golang.org/protobuf/proto"
)

// withAdmins returns a copy of m with n fresh admins (threshold t) and their keys.
func withAdmins(tb testing.TB, m *Manifest, n, t int) (*Manifest, []*AdminKey) {
	tb.Helper()
	out := m.Clone()
	var keys []*AdminKey
	for i := range n {
		k, err := NewAdminKey(fmt.Sprintf("admin-%d", i+1))
		if err != nil {
			tb.Fatal(err)
		}
		keys = append(keys, k)
		out.Admins = append(out.Admins, k.Public())
	}
	out.AdminThreshold = t
	if err := out.Validate(); err != nil {
		tb.Fatal(err)
	}
	return out, keys
}

// step makes the update of cur that edit describes, signed by signers.
func step(tb testing.TB, cur *Manifest, edit func(*Manifest), signers ...*AdminKey) *Update {
	tb.Helper()
	next := cur.Clone()
	edit(next)
	u, err := NewUpdate(cur, next)
	if err != nil {
		tb.Fatal(err)
	}
	for _, k := range signers {
		if err := u.Sign(k); err != nil {
			tb.Fatal(err)
		}
	}
	return u
}

func dropClient(id string) func(*Manifest) {
	return func(m *Manifest) {
		var keep []Member
		for _, c := range m.Clients {
			if c.ID != id {
				keep = append(keep, c)
			}
		}
		m.Clients = keep
	}
}

// A chain of updates verifies step by step: a revocation, then a change of the admin set
// (signed under the old rules), then an update under the new rules only.
func TestUpdateChainAccepted(t *testing.T) {
	c := newCluster(t)
	m0, admins := withAdmins(t, c.m, 1, 1)
	u1 := step(t, m0, dropClient("bob"), admins[0])
	m1, err := Accept(m0, u1)
	if err != nil {
		t.Fatal(err)
	}
	if m1.Serial != 1 || m1.Previous != m0.Hash() {
		t.Fatalf("serial %d previous %s", m1.Serial, m1.Previous)
	}
	if _, ok := m1.Lookup("bob"); ok {
		t.Fatal("bob still listed")
	}
	// The admins become a 2-of-2 of new keys, signed by the old admin.
	newAdmins := make([]*AdminKey, 2)
	for i := range newAdmins {
		newAdmins[i], _ = NewAdminKey(fmt.Sprintf("officer-%d", i+1))
	}
	u2 := step(t, m1, func(m *Manifest) {
		m.Admins = []Admin{newAdmins[0].Public(), newAdmins[1].Public()}
		m.AdminThreshold = 2
	}, admins[0])
	m2, err := Accept(m1, u2)
	if err != nil {
		t.Fatal(err)
	}
	// The old admin no longer signs for m2; one new admin is not enough; both are.
	add := func(m *Manifest) { m.Clients = append(m.Clients, c.mallory.Public()) }
	if _, err := Accept(m2, step(t, m2, add, admins[0])); !errors.Is(err, ErrManifestRefused) {
		t.Fatalf("old admin after rotation: %v", err)
	}
	if _, err := Accept(m2, step(t, m2, add, newAdmins[0])); !errors.Is(err, ErrManifestRefused) {
		t.Fatalf("1 of 2: %v", err)
	}
	u3 := step(t, m2, add, newAdmins[1], newAdmins[0])
	m3, err := Accept(m2, u3)
	if err != nil {
		t.Fatal(err)
	}
	// The whole chain from m0, and from m1 with the steps it holds included.
	got, applied, err := ApplyChain(m0, []*Update{u1, u2, u3})
	if err != nil || len(applied) != 3 || got.Hash() != m3.Hash() {
		t.Fatalf("chain from m0: %d applied, %v", len(applied), err)
	}
	got, applied, err = ApplyChain(m1, []*Update{u1, u2, u3})
	if err != nil || len(applied) != 2 || got.Hash() != m3.Hash() {
		t.Fatalf("chain from m1: %d applied, %v", len(applied), err)
	}
	// A chain with a gap stops at the gap, keeping what applied.
	got, applied, err = ApplyChain(m0, []*Update{u1, u3})
	if !errors.Is(err, ErrManifestRefused) || len(applied) != 1 || got.Hash() != m1.Hash() {
		t.Fatalf("gap: %d applied, %v", len(applied), err)
	}
}

// Older and equal updates are stale; nothing changes.
func TestUpdateStale(t *testing.T) {
	c := newCluster(t)
	m0, admins := withAdmins(t, c.m, 1, 1)
	u1 := step(t, m0, dropClient("bob"), admins[0])
	m1, err := Accept(m0, u1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Accept(m1, u1); !errors.Is(err, ErrManifestStale) {
		t.Fatalf("equal serial: %v", err)
	}
	u2 := step(t, m1, dropClient("alice"), admins[0])
	m2, err := Accept(m1, u2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Accept(m2, u1); !errors.Is(err, ErrManifestStale) {
		t.Fatalf("older serial: %v", err)
	}
	if _, _, err := ApplyChain(m2, []*Update{u1, u2}); !errors.Is(err, ErrManifestStale) {
		t.Fatalf("chain already held: %v", err)
	}
}

func TestUpdateRefused(t *testing.T) {
	c := newCluster(t)
	m0, admins := withAdmins(t, c.m, 3, 2)
	rogue, _ := NewAdminKey("admin-1") // the right id, another key
	stranger, _ := NewAdminKey("eve")
	revoke := dropClient("bob")
	good := step(t, m0, revoke, admins[0], admins[2])
	if _, err := Accept(m0, good); err != nil {
		t.Fatal(err)
	}
	fork := step(t, m0, dropClient("alice"), admins[0], admins[1])
	m1, _ := Accept(m0, good)
	for _, tc := range []struct {
		name string
		cur  *Manifest
		u    *Update
	}{
		{"one signature of two", m0, step(t, m0, revoke, admins[1])},
		{"unsigned", m0, step(t, m0, revoke)},
		{"wrong key for an admin id", m0, step(t, m0, revoke, rogue, admins[1])},
		{"not an admin", m0, step(t, m0, revoke, stranger, admins[0], admins[1])},
		{"signed twice by one admin", m0, func() *Update {
			u := step(t, m0, revoke, admins[0])
			u.Signatures = append(u.Signatures, u.Signatures[0])
			return u
		}()},
		{"a fork of serial 1", m1, func() *Update {
			u := step(t, m1, dropClient("alice"), admins[0], admins[1])
			u.Manifest.Serial, u.Manifest.Previous = 1, m0.Hash()
			return u
		}()},
		{"another branch of serial 1, then its child", m1, step(t, mustAccept(t, m0, fork), revoke, admins[0], admins[1])},
		{"serial skips", m0, func() *Update {
			u := step(t, m0, revoke)
			u.Manifest.Serial = 2
			u.Sign(admins[0])
			u.Sign(admins[1])
			return u
		}()},
		{"previous not the held hash", m0, func() *Update {
			u := step(t, m0, revoke)
			u.Manifest.Previous = c.m.Hash()
			u.Sign(admins[0])
			u.Sign(admins[1])
			return u
		}()},
		{"dealer removed", m0, func() *Update {
			u := step(t, m0, revoke)
			u.Manifest.Dealers = nil
			u.Sign(admins[0])
			u.Sign(admins[1])
			return u
		}()},
		{"threshold changed", m0, func() *Update {
			u := step(t, m0, revoke)
			u.Manifest.Threshold = 3
			u.Sign(admins[0])
			u.Sign(admins[1])
			return u
		}()},
		{"tampered after signing", m0, func() *Update {
			u := step(t, m0, revoke, admins[0], admins[1])
			u.Manifest.Clients = append(u.Manifest.Clients, c.mallory.Public())
			return u
		}()},
		{"tampered signature", m0, func() *Update {
			u := step(t, m0, revoke, admins[0], admins[1])
			u.Signatures[1].Signature = bytes.Clone(u.Signatures[1].Signature)
			u.Signatures[1].Signature[3] ^= 1
			return u
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Accept(tc.cur, tc.u); !errors.Is(err, ErrManifestRefused) {
				t.Fatalf("accepted or wrong error: %v", err)
			}
		})
	}
	// The admin threshold of the next manifest must make sense: NewUpdate refuses to build it.
	for _, edit := range []func(*Manifest){
		func(m *Manifest) { m.AdminThreshold = 4 },
		func(m *Manifest) { m.AdminThreshold = 0 },
		func(m *Manifest) { m.Admins, m.AdminThreshold = nil, 0 },
		func(m *Manifest) { m.Admins = append(m.Admins, m.Admins[0]) },
		func(m *Manifest) { m.Admins[0].SignPub = m.Nodes[0].SignPub }, // an online key
	} {
		next := m0.Clone()
		edit(next)
		if _, err := NewUpdate(m0, next); err == nil {
			t.Errorf("NewUpdate accepted admins %+v threshold %d", next.Admins, next.AdminThreshold)
		}
	}
	// ... and so does Accept of a hand-made one, whoever signed it.
	bad := step(t, m0, revoke)
	bad.Manifest.AdminThreshold = 5
	bad.Sign(admins[0])
	bad.Sign(admins[1])
	if _, err := Accept(m0, bad); !errors.Is(err, ErrManifestRefused) {
		t.Fatalf("admin threshold 5 of 3: %v", err)
	}
	// A manifest without admins (every manifest of older releases) takes no update at all.
	if _, err := Accept(c.m, &Update{Manifest: func() *Manifest {
		n := c.m.Clone()
		n.Serial, n.Previous = 1, c.m.Hash()
		n.Admins, n.AdminThreshold = m0.Admins, 1
		return n
	}(), Signatures: good.Signatures}); !errors.Is(err, ErrManifestRefused) {
		t.Fatalf("update of a manifest without admins: %v", err)
	}
}

func mustAccept(t *testing.T, cur *Manifest, u *Update) *Manifest {
	t.Helper()
	m, err := Accept(cur, u)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The wire and file forms round-trip, and a flipped byte anywhere in the wire form is refused
// (or decodes to something Accept refuses).
func TestUpdateEncodings(t *testing.T) {
	c := newCluster(t)
	m0, admins := withAdmins(t, c.m, 1, 1)
	u := step(t, m0, dropClient("bob"), admins[0])
	pb, err := u.Proto()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UpdateFromProto(pb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Accept(m0, back); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "u.json")
	if err := WriteUpdateFile(path, u); err != nil {
		t.Fatal(err)
	}
	fromFile, err := ReadUpdateFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Accept(m0, fromFile); err != nil {
		t.Fatal(err)
	}
	raw, _ := proto.Marshal(pb)
	for i := range raw {
		b := bytes.Clone(raw)
		b[i] ^= 0x20
		var p tchsmpb.ManifestUpdate
		if proto.Unmarshal(b, &p) != nil {
			continue
		}
		v, err := UpdateFromProto(&p)
		if err != nil {
			continue
		}
		if _, err := Accept(m0, v); err == nil && !proto.Equal(&p, pb) {
			// JSON is case-sensitive in its values only where they matter: any change the
			// canonical form keeps is not a change of the manifest.
			c1, _ := v.Manifest.Canonical()
			if !bytes.Equal(c1, pb.Manifest) {
				t.Fatalf("byte %d flipped: accepted a different manifest", i)
			}
		}
	}
}

// The admin key file is private, reads back, and signs what its public part verifies.
func TestAdminKeyFile(t *testing.T) {
	k, err := NewAdminKey("admin-1")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "admin.key")
	if err := WriteAdminKeyFile(path, k); err != nil {
		t.Fatal(err)
	}
	back, err := ReadAdminKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Key, k.Key) || back.ID != k.ID {
		t.Fatal("round trip")
	}
	os.Chmod(path, 0o644)
	if _, err := ReadAdminKeyFile(path); !errors.Is(err, ErrInsecurePermissions) {
		t.Fatalf("0644: %v", err)
	}
	if !ed25519.Verify(k.Public().SignPub, []byte("x"), ed25519.Sign(back.Key, []byte("x"))) {
		t.Fatal("public part")
	}
}

// Trusted persists what it applies (the manifest file, then its updates beside it), comes back
// with it, hands out the updates a process behind lacks, and never goes back.
func TestTrustedPersists(t *testing.T) {
	c := newCluster(t)
	m0, admins := withAdmins(t, c.m, 1, 1)
	path := filepath.Join(t.TempDir(), "manifest.json")
	if err := m0.Save(path); err != nil {
		t.Fatal(err)
	}
	tr, err := OpenTrusted(path)
	if err != nil {
		t.Fatal(err)
	}
	behind, err := OpenTrusted(path) // another process sharing the file, which will lag
	if err != nil {
		t.Fatal(err)
	}
	var seen []uint64
	tr.OnChange(func(m *Manifest) { seen = append(seen, m.Serial) })
	u1 := step(t, m0, dropClient("bob"), admins[0])
	m1 := mustAccept(t, m0, u1)
	u2 := step(t, m1, dropClient("alice"), admins[0])
	if applied, err := tr.Apply([]*Update{u1, u2}); err != nil || len(applied) != 2 {
		t.Fatalf("apply: %d, %v", len(applied), err)
	}
	if tr.Manifest().Serial != 2 || len(seen) != 1 || seen[0] != 2 {
		t.Fatalf("serial %d, changes %v", tr.Manifest().Serial, seen)
	}
	if _, err := tr.Apply([]*Update{u1}); !errors.Is(err, ErrManifestStale) {
		t.Fatalf("older: %v", err)
	}
	// The lagging process applies serial 1 but does not write it over the file's serial 2.
	if _, err := behind.Apply([]*Update{u1}); err != nil || behind.Manifest().Serial != 1 {
		t.Fatalf("behind: %v", err)
	}
	if m, err := LoadManifest(path); err != nil || m.Serial != 2 {
		t.Fatalf("the file went back to serial %d: %v", m.Serial, err)
	}
	ups, incomplete := tr.Since(0)
	if len(ups) != 2 || incomplete {
		t.Fatalf("since 0: %d, %v", len(ups), incomplete)
	}
	if ups, _ := tr.Since(2); len(ups) != 0 {
		t.Fatal("since 2")
	}
	again, err := OpenTrusted(path)
	if err != nil {
		t.Fatal(err)
	}
	if again.Manifest().Hash() != tr.Manifest().Hash() {
		t.Fatal("the file does not hold the newest manifest")
	}
	if ups, _ := again.Since(1); len(ups) != 1 || ups[0].Serial() != 2 {
		t.Fatal("updates not kept")
	}
	// A crash after the updates were written but before the manifest: the file is at serial
	// 1; the kept update 2 is applied again at open.
	if err := m1.Save(path); err != nil {
		t.Fatal(err)
	}
	third, err := OpenTrusted(path)
	if err != nil {
		t.Fatal(err)
	}
	if third.Manifest().Serial != 2 {
		t.Fatalf("serial %d after the interrupted write", third.Manifest().Serial)
	}
}

// An Opener moved to a newer manifest refuses the members it no longer lists.
func TestOpenerSetManifest(t *testing.T) {
	c := newCluster(t)
	o := c.opener(t)
	bob := c.sealer(c.bob)
	raw, _, _ := bob.Seal(tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST, &tchsmpb.HealthRequest{}, 10e9)
	if _, err := o.Open(raw); err != nil {
		t.Fatal(err)
	}
	m0, admins := withAdmins(t, c.m, 1, 1)
	m1 := mustAccept(t, m0, step(t, m0, dropClient("bob"), admins[0]))
	if err := o.SetManifest(m1); err != nil {
		t.Fatal(err)
	}
	raw, _, _ = bob.Seal(tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST, &tchsmpb.HealthRequest{}, 10e9)
	if _, err := o.Open(raw); !errors.Is(err, ErrUnknownSender) {
		t.Fatalf("revoked bob: %v", err)
	}
	raw, _, _ = c.aliceSealer.Seal(tchsmpb.BodyType_BODY_TYPE_HEALTH_REQUEST, &tchsmpb.HealthRequest{}, 10e9)
	if _, err := o.Open(raw); err != nil {
		t.Fatalf("alice: %v", err)
	}
	other := m1.Clone()
	other.ClusterID = "other"
	if err := o.SetManifest(other); err == nil {
		t.Fatal("another cluster's manifest")
	}
}

// Manifests of older releases (no serial, no admins) keep their hash and fingerprint: the new
// fields are omitted when empty.
func TestOldManifestUnchanged(t *testing.T) {
	c := newCluster(t)
	b, err := json.Marshal(c.m)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"serial", "previous", "admins", "admin_threshold"} {
		if bytes.Contains(b, []byte(`"`+f+`"`)) {
			t.Fatalf("%s written for a manifest without it", f)
		}
	}
}

// FuzzManifestUpdate decodes arbitrary bytes as a wire update and checks it against a
// manifest with an admin: no panics, and whatever is accepted was signed by that admin over
// exactly the manifest accepted.
func FuzzManifestUpdate(f *testing.F) {
	c := newCluster(f)
	m0, admins := withAdmins(f, c.m, 1, 1)
	u := step(f, m0, dropClient("bob"), admins[0])
	pb, _ := u.Proto()
	good, _ := proto.Marshal(pb)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	file, _ := json.Marshal(u)
	f.Add(file)
	f.Fuzz(func(t *testing.T, data []byte) {
		var p tchsmpb.ManifestUpdate
		if proto.Unmarshal(data, &p) == nil {
			if v, err := UpdateFromProto(&p); err == nil {
				if next, err := Accept(m0, v); err == nil {
					cb, _ := next.Canonical()
					if !ed25519.Verify(admins[0].Public().SignPub, UpdateSigningInput(cb), v.Signatures[0].Signature) {
						t.Fatal("accepted an update its admin did not sign")
					}
				}
			} else if !errors.Is(err, ErrManifestRefused) {
				t.Fatalf("error %v is not ErrManifestRefused", err)
			}
		}
		if v, err := ParseUpdate(data); err == nil {
			_, _ = Accept(m0, v)
		} else if !errors.Is(err, ErrManifestRefused) {
			t.Fatalf("file form: error %v is not ErrManifestRefused", err)
		}
	})
}
