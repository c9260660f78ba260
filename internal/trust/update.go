package trust

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"

	tchsmpb "github.com/tchsm/tchsm/proto"
)

// Manifest updates.
//
// The manifest changes only by an Update: the whole next manifest, whose Serial is the held
// one's plus one and whose Previous is the held one's Hash, signed by at least AdminThreshold
// of the held manifest's Admins. Every process (node, dealer, client) accepts an update only
// under the rules of the manifest it trusts now (Accept), so a chain of updates verifies step
// by step from any manifest the process held: a process never trusts a manifest it could not
// have reached from its own by signed steps. Naming the previous hash refuses forks (two
// different updates of one serial cannot both follow the held manifest, and a process that
// took one refuses the other); the serial refuses replays and rollbacks (an update at or below
// the held serial is stale). Changing the admins or their threshold is an update like any
// other, signed under the old rules; the new rules govern the next update.
//
// Why offline admin keys and not k of the nodes' keys (or the clients'): the nodes' and the
// clients' signing keys live on online hosts, in processes that answer the broker. Whoever
// compromises k signer hosts already holds k shares, but should not also be able to rewrite
// the membership (add a client of their own, remove the honest nodes' operators, replace the
// dealer) and so survive the cleanup of those hosts; and a revocation must work when the hosts
// to revoke are the compromised ones. A key that signs nothing but manifest updates, kept
// offline by the operators (tchsm init writes one, default 1 of 1, into a file to store away),
// separates the membership root from every online secret. The cost is ceremony: an update
// needs the admin key brought out, which is what an HSM's security officer card needs too.
//
// What an update may not change: the cluster id, the threshold k and the number of nodes n
// (with their indices 1..n). Every key record and every share is bound to them; changing them
// is a new cluster, or a key rollover, not a manifest update. Everything else may change:
// clients added, removed or given another role, a node's or the dealer's identity replaced,
// the admins and their threshold.

// Errors of update checking; every refusal wraps ErrManifestRefused or ErrManifestStale.
var (
	// ErrManifestStale: the update is not newer than the held manifest (an older update
	// replayed, or one already applied). Not harmful; nothing changes.
	ErrManifestStale = errors.New("trust: manifest update not newer than the held manifest")
	// ErrManifestRefused: the held manifest's rules refuse the update.
	ErrManifestRefused = errors.New("trust: manifest update refused")
)

// MaxChain is the most updates one push or fetch carries, and the most a process keeps.
const MaxChain = 64

// updateDomain separates update signatures from every other Ed25519 signature of tchsm.
const updateDomain = "tchsm/v1/manifest-update"

// Update is one signed step of the manifest's history.
type Update struct {
	Manifest   *Manifest
	Signatures []AdminSignature
}

// AdminSignature is one admin's signature of an update.
type AdminSignature struct {
	Admin     string `json:"admin"`
	Signature []byte `json:"signature"` // Ed25519 over UpdateSigningInput
}

// UpdateSigningInput is what admins sign: the domain and the next manifest's canonical bytes
// (which carry the cluster id, the serial and the previous manifest's hash).
func UpdateSigningInput(canonical []byte) []byte {
	b := appendLPString(nil, updateDomain)
	return appendLP(b, canonical)
}

// Serial is the serial of the manifest the update installs.
func (u *Update) Serial() uint64 { return u.Manifest.Serial }

// NewUpdate prepares the update that replaces cur by next: it sets next's cluster id, serial
// and previous hash from cur, validates it, and returns it unsigned. next must be a copy (the
// caller edits a Clone of cur).
func NewUpdate(cur, next *Manifest) (*Update, error) {
	if err := cur.Validate(); err != nil {
		return nil, err
	}
	next.ClusterID, next.Serial, next.Previous = cur.ClusterID, cur.Serial+1, cur.Hash()
	if err := checkStep(cur, next); err != nil {
		return nil, err
	}
	return &Update{Manifest: next}, nil
}

// Clone returns a deep copy of m, for building the next manifest.
func (m *Manifest) Clone() *Manifest {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // a Manifest always encodes
	}
	out := new(Manifest)
	if err := json.Unmarshal(b, out); err != nil {
		panic(err)
	}
	return out
}

// Sign adds key's signature. The key must be one of the admins of the manifest the update
// replaces; Accept checks that.
func (u *Update) Sign(key *AdminKey) error {
	if err := key.check(); err != nil {
		return err
	}
	for _, s := range u.Signatures {
		if s.Admin == key.ID {
			return fmt.Errorf("trust: update already signed by %s", key.ID)
		}
	}
	c, err := u.Manifest.Canonical()
	if err != nil {
		return err
	}
	u.Signatures = append(u.Signatures, AdminSignature{Admin: key.ID, Signature: ed25519.Sign(key.Key, UpdateSigningInput(c))})
	return nil
}

// checkStep checks what the rules say of next after cur, apart from signatures.
func checkStep(cur, next *Manifest) error {
	if err := next.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrManifestRefused, err)
	}
	switch {
	case next.ClusterID != cur.ClusterID:
		return fmt.Errorf("%w: cluster %q, the held manifest's is %q", ErrManifestRefused, next.ClusterID, cur.ClusterID)
	case next.Serial == cur.Serial && next.Hash() != cur.Hash():
		return fmt.Errorf("%w: serial %d differs from the held manifest of that serial (a fork)", ErrManifestRefused, next.Serial)
	case next.Serial <= cur.Serial:
		return fmt.Errorf("%w: serial %d, the held manifest's is %d", ErrManifestStale, next.Serial, cur.Serial)
	case next.Serial != cur.Serial+1:
		return fmt.Errorf("%w: serial %d does not follow the held %d (apply the updates in between first)", ErrManifestRefused, next.Serial, cur.Serial)
	case next.Previous != cur.Hash():
		return fmt.Errorf("%w: serial %d names previous %.16s…, the held manifest is %.16s… (a fork)", ErrManifestRefused, next.Serial, next.Previous, cur.Hash())
	case next.Threshold != cur.Threshold || next.N() != cur.N():
		return fmt.Errorf("%w: %d-of-%d, the held manifest is %d-of-%d (k and n are fixed: every key record is bound to them)", ErrManifestRefused, next.Threshold, next.N(), cur.Threshold, cur.N())
	case len(next.Admins) == 0:
		return fmt.Errorf("%w: the update removes every admin (the manifest could never change again)", ErrManifestRefused)
	}
	// A dealer's key signs the key records every node stores and verifies again at each start,
	// and every client verifies: a dealer removed or re-keyed would leave every RSA key
	// unverifiable (nodes would refuse to open their stores). Until records can be re-signed,
	// dealers are only ever added.
	for _, d := range cur.Dealers {
		nd, ok := next.Lookup(d.ID)
		if !ok || nd.Role != RoleDealer || !bytes.Equal(nd.SignPub, d.SignPub) {
			return fmt.Errorf("%w: dealer %s removed or given a new signing key: its key signs the key records the nodes hold (dealers can only be added)", ErrManifestRefused, d.ID)
		}
	}
	return nil
}

// Accept checks u under the rules of cur and returns the manifest it installs: a valid
// manifest of cur's cluster with serial cur's + 1, naming cur's hash, k and n unchanged, and
// signed by at least cur.AdminThreshold distinct admins of cur. A signature by anyone else, a
// duplicate or an invalid one refuses the update whatever the others.
func Accept(cur *Manifest, u *Update) (*Manifest, error) {
	if u == nil || u.Manifest == nil {
		return nil, fmt.Errorf("%w: empty update", ErrManifestRefused)
	}
	next := u.Manifest
	if err := checkStep(cur, next); err != nil {
		return nil, err
	}
	if len(cur.Admins) == 0 {
		return nil, fmt.Errorf("%w: the held manifest (serial %d) names no admins: it changes only by a new file on every host", ErrManifestRefused, cur.Serial)
	}
	if len(u.Signatures) > len(cur.Admins) {
		return nil, fmt.Errorf("%w: %d signatures, the held manifest has %d admins", ErrManifestRefused, len(u.Signatures), len(cur.Admins))
	}
	c, err := next.Canonical()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrManifestRefused, err)
	}
	msg := UpdateSigningInput(c)
	seen := map[string]bool{}
	for _, s := range u.Signatures {
		a, ok := cur.Admin(s.Admin)
		if !ok {
			return nil, fmt.Errorf("%w: signed by %.64q, not an admin of the held manifest", ErrManifestRefused, s.Admin)
		}
		if seen[a.ID] {
			return nil, fmt.Errorf("%w: %s signed twice", ErrManifestRefused, a.ID)
		}
		seen[a.ID] = true
		if len(s.Signature) != ed25519.SignatureSize || !ed25519.Verify(a.SignPub, msg, s.Signature) {
			return nil, fmt.Errorf("%w: bad signature by admin %s", ErrManifestRefused, a.ID)
		}
	}
	if len(seen) < cur.AdminThreshold {
		return nil, fmt.Errorf("%w: %d admin signature(s), the held manifest needs %d", ErrManifestRefused, len(seen), cur.AdminThreshold)
	}
	return next, nil
}

// ApplyChain applies updates, oldest first, to cur and returns the manifest reached, the
// updates applied and an error for the first one refused (the manifest reached until then
// is returned with it). Updates below cur's serial are skipped; one at cur's serial is skipped
// when it installs cur itself, and refused as a fork otherwise. Nothing applied and nothing
// refused is ErrManifestStale.
func ApplyChain(cur *Manifest, updates []*Update) (*Manifest, []*Update, error) {
	if len(updates) > MaxChain {
		return cur, nil, fmt.Errorf("%w: %d updates (max %d)", ErrManifestRefused, len(updates), MaxChain)
	}
	var applied []*Update
	for _, u := range updates {
		if u == nil || u.Manifest == nil {
			return cur, applied, fmt.Errorf("%w: empty update", ErrManifestRefused)
		}
		switch s := u.Serial(); {
		case s < cur.Serial:
			continue
		case s == cur.Serial:
			if u.Manifest.Hash() != cur.Hash() {
				return cur, applied, fmt.Errorf("%w: serial %d differs from the held manifest of that serial (a fork)", ErrManifestRefused, s)
			}
			continue
		}
		next, err := Accept(cur, u)
		if err != nil {
			return cur, applied, err
		}
		cur = next
		applied = append(applied, u)
	}
	if len(applied) == 0 {
		return cur, nil, fmt.Errorf("%w: serial %d is held already", ErrManifestStale, cur.Serial)
	}
	return cur, applied, nil
}

// Proto is the update's wire form.
func (u *Update) Proto() (*tchsmpb.ManifestUpdate, error) {
	c, err := u.Manifest.Canonical()
	if err != nil {
		return nil, err
	}
	pb := &tchsmpb.ManifestUpdate{Manifest: c}
	for _, s := range u.Signatures {
		pb.Signatures = append(pb.Signatures, &tchsmpb.AdminSignature{Admin: s.Admin, Signature: slices.Clone(s.Signature)})
	}
	return pb, nil
}

// UpdateFromProto decodes an update from the wire: the manifest must parse and validate
// (ParseManifest: strict, bounded), at most MaxAdmins signatures of the right size. It does not
// check the signatures: Accept does, under the held manifest.
func UpdateFromProto(pb *tchsmpb.ManifestUpdate) (*Update, error) {
	if pb == nil {
		return nil, fmt.Errorf("%w: empty update", ErrManifestRefused)
	}
	if len(pb.GetSignatures()) > MaxAdmins {
		return nil, fmt.Errorf("%w: %d signatures (max %d)", ErrManifestRefused, len(pb.GetSignatures()), MaxAdmins)
	}
	m, err := ParseManifest(pb.GetManifest())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrManifestRefused, err)
	}
	u := &Update{Manifest: m}
	for _, s := range pb.GetSignatures() {
		if !idPattern.MatchString(s.GetAdmin()) || len(s.GetSignature()) != ed25519.SignatureSize {
			return nil, fmt.Errorf("%w: malformed signature entry", ErrManifestRefused)
		}
		u.Signatures = append(u.Signatures, AdminSignature{Admin: s.GetAdmin(), Signature: slices.Clone(s.GetSignature())})
	}
	return u, nil
}

// UpdatesFromProto decodes a chain (ManifestPush.updates, ManifestChain.updates).
func UpdatesFromProto(pbs []*tchsmpb.ManifestUpdate) ([]*Update, error) {
	if len(pbs) > MaxChain {
		return nil, fmt.Errorf("%w: %d updates (max %d)", ErrManifestRefused, len(pbs), MaxChain)
	}
	out := make([]*Update, 0, len(pbs))
	for _, pb := range pbs {
		u, err := UpdateFromProto(pb)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// UpdatesProto encodes a chain.
func UpdatesProto(us []*Update) ([]*tchsmpb.ManifestUpdate, error) {
	out := make([]*tchsmpb.ManifestUpdate, 0, len(us))
	for _, u := range us {
		pb, err := u.Proto()
		if err != nil {
			return nil, err
		}
		out = append(out, pb)
	}
	return out, nil
}

// updateFile is an update's file form, for operators to read before they sign: the next
// manifest as a JSON object and the signatures so far.
type updateFile struct {
	Manifest   json.RawMessage  `json:"manifest"`
	Signatures []AdminSignature `json:"signatures"`
}

// MarshalJSON writes the file form.
func (u *Update) MarshalJSON() ([]byte, error) {
	c, err := u.Manifest.Canonical()
	if err != nil {
		return nil, err
	}
	sigs := u.Signatures
	if sigs == nil {
		sigs = []AdminSignature{}
	}
	return json.Marshal(updateFile{Manifest: c, Signatures: sigs})
}

// ParseUpdate reads the file form (strict: unknown fields refused, the manifest validated).
func ParseUpdate(data []byte) (*Update, error) {
	if len(data) > maxManifestLen+MaxAdmins*256 {
		return nil, fmt.Errorf("%w: %d bytes", ErrManifestRefused, len(data))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f updateFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrManifestRefused, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the update", ErrManifestRefused)
	}
	pb := &tchsmpb.ManifestUpdate{Manifest: f.Manifest}
	for _, s := range f.Signatures {
		pb.Signatures = append(pb.Signatures, &tchsmpb.AdminSignature{Admin: s.Admin, Signature: s.Signature})
	}
	return UpdateFromProto(pb)
}

// WriteUpdateFile writes u's file form (indented) atomically, mode 0644: an update holds only
// public keys and signatures.
func WriteUpdateFile(path string, u *Update) error {
	b, err := json.MarshalIndent(u, "", "  ")
	if err != nil {
		return fmt.Errorf("trust: encoding update: %w", err)
	}
	return writeAtomic(path, append(b, '\n'), 0o644)
}

// ReadUpdateFile reads an update file.
func ReadUpdateFile(path string) (*Update, error) {
	data, err := readBounded(path, maxManifestLen+MaxAdmins*256)
	if err != nil {
		return nil, err
	}
	u, err := ParseUpdate(data)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return u, nil
}

// AdminKey is a manifest admin's private key. It signs manifest updates only and belongs
// offline (a removable medium in a safe): it never goes on a node, dealer or client host.
type AdminKey struct {
	ID  string
	Key ed25519.PrivateKey
}

// NewAdminKey generates an admin key.
func NewAdminKey(id string) (*AdminKey, error) {
	if !idPattern.MatchString(id) {
		return nil, fmt.Errorf("%w: admin id %q must match %s", ErrInvalidIdentity, id, idPattern)
	}
	_, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("trust: generating admin key: %w", err)
	}
	return &AdminKey{ID: id, Key: sk}, nil
}

// Public is the admin's manifest entry.
func (k *AdminKey) Public() Admin {
	return Admin{ID: k.ID, SignPub: slices.Clone(k.Key.Public().(ed25519.PublicKey))}
}

func (k *AdminKey) check() error {
	if k == nil || !idPattern.MatchString(k.ID) || len(k.Key) != ed25519.PrivateKeySize {
		return fmt.Errorf("%w: malformed admin key", ErrInvalidIdentity)
	}
	return nil
}

// adminKeyFile is the admin key's file form.
type adminKeyFile struct {
	ID   string `json:"id"`
	Role string `json:"role"` // "manifest-admin"
	Seed []byte `json:"seed"` // Ed25519 seed, 32 bytes
}

// WriteAdminKeyFile writes k unencrypted with mode 0600 (keep the file offline).
func WriteAdminKeyFile(path string, k *AdminKey) error {
	if err := k.check(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(adminKeyFile{ID: k.ID, Role: "manifest-admin", Seed: k.Key.Seed()}, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(path, append(b, '\n'), 0o600)
}

// ReadAdminKeyFile reads an admin key file; like identity files, it must not be readable by
// group or others.
func ReadAdminKeyFile(path string) (*AdminKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("trust: reading admin key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s (mode %v)", ErrInsecurePermissions, path, st.Mode().Perm())
	}
	data, err := readBounded(path, 4096)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f adminKeyFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidIdentity, path, err)
	}
	if f.Role != "manifest-admin" || len(f.Seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: %s is not a manifest admin key", ErrInvalidIdentity, path)
	}
	k := &AdminKey{ID: f.ID, Key: ed25519.NewKeyFromSeed(f.Seed)}
	clear(f.Seed)
	return k, k.check()
}

// readBounded reads a file of at most max bytes.
func readBounded(path string, max int64) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	if st.Size() > max {
		return nil, fmt.Errorf("trust: %s is %d bytes (max %d)", path, st.Size(), max)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	return b, nil
}
