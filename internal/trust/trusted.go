package trust

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// Trusted is the manifest a long-running process (node, dealer) trusts now. It moves forward
// only by updates the held manifest's rules accept (ApplyChain), writes each new manifest to
// its file atomically before anyone uses it (the file stays the source at the next start), and
// keeps the updates it applied (at most MaxChain, in the file's ".updates" companion) to hand
// them to processes that are behind (ManifestFetch, and the dealer's pushes to the nodes).
type Trusted struct {
	path string
	cur  atomic.Pointer[Manifest]

	mu       sync.Mutex // serialises Apply and guards chain, onChange
	chain    []*Update  // applied updates, ascending serials ending at cur's
	onChange []func(*Manifest)
}

// UpdatesPath is where the updates a process applied are kept beside its manifest file.
func UpdatesPath(manifestPath string) string { return manifestPath + ".updates" }

// OpenTrusted loads the manifest file at path and the updates kept beside it. Kept updates
// newer than the file (a crash between writing them and the manifest) are applied again,
// checked step by step like any other; kept updates that do not end at the file's manifest are
// dropped (the file wins).
func OpenTrusted(path string) (*Trusted, error) {
	m, err := LoadManifest(path)
	if err != nil {
		return nil, err
	}
	t := &Trusted{path: path}
	t.cur.Store(m)
	chain, err := readChain(UpdatesPath(path))
	if err != nil {
		return nil, err
	}
	var kept, newer []*Update
	for _, u := range chain {
		if u.Serial() <= m.Serial {
			kept = append(kept, u)
		} else {
			newer = append(newer, u)
		}
	}
	// The kept updates up to the file's serial must end at the file's manifest; when they do
	// not, the file was replaced by hand and wins over everything kept.
	if n := len(kept); n > 0 && kept[n-1].Manifest.Hash() != m.Hash() || n == 0 && m.Serial > 0 && len(chain) > 0 {
		return t, nil
	}
	t.chain = kept
	if len(newer) > 0 {
		if _, err := t.Apply(newer); err != nil && !errors.Is(err, ErrManifestStale) {
			return nil, fmt.Errorf("trust: the updates kept in %s do not apply to %s: %w", UpdatesPath(path), path, err)
		}
	}
	return t, nil
}

// NewTrusted holds m in memory only (tests, processes without a manifest file of their own).
func NewTrusted(m *Manifest) *Trusted {
	t := &Trusted{}
	t.cur.Store(m)
	return t
}

// Manifest is the manifest trusted now. Never modify it.
func (t *Trusted) Manifest() *Manifest { return t.cur.Load() }

// OnChange registers f, called (under Apply's lock, in registration order) with every manifest
// Apply installs, after it is on disk.
func (t *Trusted) OnChange(f func(*Manifest)) {
	t.mu.Lock()
	t.onChange = append(t.onChange, f)
	t.mu.Unlock()
}

// Apply applies updates (ApplyChain) to the held manifest, persists what they reach (updates
// first, then the manifest file) and swaps it in. It returns the updates applied; when some
// applied and a later one was refused, the manifest they reached is installed and the error is
// returned too. Nothing applied is ErrManifestStale or the refusal.
func (t *Trusted) Apply(updates []*Update) ([]*Update, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.cur.Load()
	next, applied, err := ApplyChain(cur, updates)
	if len(applied) == 0 {
		return nil, err
	}
	chain := append(append([]*Update(nil), t.chain...), applied...)
	if len(chain) > MaxChain {
		chain = chain[len(chain)-MaxChain:]
	}
	// Processes on one host may share one manifest file (tchsm dev up, test clusters): one
	// that was behind must not write an older manifest over a newer one another wrote.
	if disk, derr := LoadManifest(t.path); t.path != "" && (derr != nil || disk.Serial <= next.Serial) {
		if werr := writeChain(UpdatesPath(t.path), chain); werr != nil {
			return nil, werr
		}
		if werr := next.Save(t.path); werr != nil {
			return nil, werr
		}
	}
	t.chain = chain
	t.cur.Store(next)
	for _, f := range t.onChange {
		f(next)
	}
	return applied, err
}

// Since returns the kept updates after serial have, oldest first (at most MaxChain), and
// whether the process cannot give every update after have (it keeps only the last MaxChain:
// the asker must then get the manifest file).
func (t *Trusted) Since(have uint64) (ups []*Update, incomplete bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.cur.Load()
	if have >= cur.Serial {
		return nil, false
	}
	for _, u := range t.chain {
		if u.Serial() > have {
			ups = append(ups, u)
		}
	}
	return ups, len(ups) == 0 || ups[0].Serial() != have+1
}

// readChain reads an updates file ("" or missing: none).
func readChain(path string) ([]*Update, error) {
	data, err := readBounded(path, int64(MaxChain)*(maxManifestLen/4))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var raw []json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("trust: %s: %w", path, err)
	}
	if len(raw) > MaxChain {
		raw = raw[len(raw)-MaxChain:]
	}
	out := make([]*Update, 0, len(raw))
	for _, r := range raw {
		u, err := ParseUpdate(r)
		if err != nil {
			return nil, fmt.Errorf("trust: %s: %w", path, err)
		}
		out = append(out, u)
	}
	return out, nil
}

func writeChain(path string, chain []*Update) error {
	b, err := json.Marshal(chain)
	if err != nil {
		return fmt.Errorf("trust: encoding updates: %w", err)
	}
	return writeAtomic(path, append(b, '\n'), 0o644)
}
