// Package modexp is the constant-time modular exponentiation behind a threshold RSA signature
// share, x^(s_i) mod N with the secret share s_i as exponent, and the choice among its
// implementations ("engines"). The share costs one full-length exponentiation and is the
// cluster's speed (issue 17).
//
// Two engines exist:
//
//   - "bigmod": filippo.io/bigmod, pure Go, always linked. It has assembly for 1024-, 1536- and
//     2048-bit moduli only; 3072 and 4096 bits take its generic Go loop (about 4× slower than
//     OpenSSL there).
//   - "openssl": libcrypto's BN_mod_exp_mont_consttime with BN_FLG_CONSTTIME on the exponent,
//     through cgo, in package internal/modexp/openssl. It is linked only into binaries that
//     import that package (the node does; the PKCS#11 module libtchsm.so, which computes no
//     shares, does not), and registers itself when linked.
//
// Selected returns the engine in use: the one named by $TCHSM_MODEXP ("bigmod" or "openssl";
// an engine that is not linked is an error), else openssl when linked, else bigmod. The
// environment is read once, on first use.
//
// Constant time: in both engines no branch and no memory address depends on the value of the
// exponent; its length is public. Callers pass exponents of a fixed length (a share is exactly
// the modulus's size in bytes). OpenSSL takes the length in 64-bit words of the exponent's
// value (BIGNUM's top), so it leaks whether the top word of a share is zero, which for a share
// s_i < N/4 happens with probability 2^-62; OpenSSL's own RSA code has the same property for d.
// The base and the modulus are public.
package modexp

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"filippo.io/bigmod"
)

// EnvVar names the environment variable that forces an engine.
const EnvVar = "TCHSM_MODEXP"

// Errors.
var (
	ErrUnknownEngine = errors.New("modexp: unknown or unlinked engine")
	ErrInput         = errors.New("modexp: invalid input")
)

// Engine computes base^exp mod m in constant time with respect to exp's value.
type Engine interface {
	// Name is the engine's name, as $TCHSM_MODEXP spells it.
	Name() string
	// Exp returns base^exp mod m, big-endian, exactly m.Size() bytes. base must be
	// exactly m.Size() bytes and less than m; exp may have any length (its length is
	// public, its value is not).
	Exp(m *Modulus, base, exp []byte) ([]byte, error)
}

// Modulus is an odd public modulus, with what the engines precompute for it.
type Modulus struct {
	n     []byte // big-endian, no leading zero byte
	bm    *bigmod.Modulus
	state sync.Map // engine-specific precomputation (Montgomery context), by engine's key
}

// NewModulus returns the modulus n (big-endian; odd, greater than 1).
func NewModulus(n []byte) (*Modulus, error) {
	for len(n) > 0 && n[0] == 0 {
		n = n[1:]
	}
	if len(n) == 0 || n[len(n)-1]&1 == 0 || (len(n) == 1 && n[0] == 1) {
		return nil, fmt.Errorf("%w: the modulus must be odd and greater than 1", ErrInput)
	}
	bm, err := bigmod.NewModulus(n)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInput, err)
	}
	return &Modulus{n: append([]byte(nil), n...), bm: bm}, nil
}

// Size is the modulus's length in bytes.
func (m *Modulus) Size() int { return len(m.n) }

// Bytes returns the modulus, big-endian, without leading zeros. The caller must not modify it.
func (m *Modulus) Bytes() []byte { return m.n }

// Bigmod returns the modulus as filippo.io/bigmod uses it.
func (m *Modulus) Bigmod() *bigmod.Modulus { return m.bm }

// State returns the engine-specific precomputation stored under key, calling make to create it
// on first use (concurrent first uses may each call make; one result is kept and the others are
// passed to discard, which may be nil).
func (m *Modulus) State(key any, make func() (any, error), discard func(any)) (any, error) {
	if v, ok := m.state.Load(key); ok {
		return v, nil
	}
	v, err := make()
	if err != nil {
		return nil, err
	}
	got, loaded := m.state.LoadOrStore(key, v)
	if loaded && discard != nil {
		discard(v)
	}
	return got, nil
}

// Bigmod is the pure-Go engine.
type Bigmod struct{}

// Name implements Engine.
func (Bigmod) Name() string { return "bigmod" }

// Exp implements Engine.
func (Bigmod) Exp(m *Modulus, base, exp []byte) ([]byte, error) {
	if len(base) != m.Size() {
		return nil, fmt.Errorf("%w: base of %d bytes for a %d-byte modulus", ErrInput, len(base), m.Size())
	}
	b, err := bigmod.NewNat().SetBytes(base, m.bm)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInput, err)
	}
	return bigmod.NewNat().Exp(b, exp, m.bm).Bytes(m.bm), nil
}

var (
	mu       sync.Mutex
	engines  = []Engine{Bigmod{}}
	selOnce  sync.Once
	selected Engine
	selErr   error
)

// Register adds an engine; packages that link one call it from init. A later registration is
// preferred by default over an earlier one.
func Register(e Engine) {
	mu.Lock()
	defer mu.Unlock()
	engines = append(engines, e)
}

// Engines returns every linked engine, bigmod first.
func Engines() []Engine {
	mu.Lock()
	defer mu.Unlock()
	return append([]Engine(nil), engines...)
}

// Lookup returns the linked engine called name.
func Lookup(name string) (Engine, error) {
	for _, e := range Engines() {
		if e.Name() == name {
			return e, nil
		}
	}
	return nil, fmt.Errorf("%w: %q (linked: %s)", ErrUnknownEngine, name, names())
}

func names() string {
	s := ""
	for i, e := range Engines() {
		if i > 0 {
			s += ", "
		}
		s += e.Name()
	}
	return s
}

// Selected returns the engine in use (see the package doc). It fails when $TCHSM_MODEXP names
// an engine that is not linked into the binary; the node checks this at start-up.
func Selected() (Engine, error) {
	selOnce.Do(func() {
		if name := os.Getenv(EnvVar); name != "" {
			selected, selErr = Lookup(name)
			if selErr != nil {
				selErr = fmt.Errorf("$%s: %w", EnvVar, selErr)
			}
			return
		}
		all := Engines()
		selected = all[len(all)-1]
	})
	if selErr == nil {
		return Timed(selected), nil
	}
	return selected, selErr
}

// Exp is Selected().Exp.
func Exp(m *Modulus, base, exp []byte) ([]byte, error) {
	e, err := Selected()
	if err != nil {
		return nil, err
	}
	return e.Exp(m, base, exp)
}

// Timed returns e with its exponentiations' CPU time counted in CPUTime. Selected returns its
// engine timed; Lookup and Engines return them bare (tests and benchmarks that time them).
func Timed(e Engine) Engine {
	if t, ok := e.(timedEngine); ok {
		return t
	}
	return timedEngine{e}
}

type timedEngine struct{ Engine }

func (t timedEngine) Exp(m *Modulus, base, exp []byte) (out []byte, err error) {
	timed(func() { out, err = t.Engine.Exp(m, base, exp) })
	return out, err
}
