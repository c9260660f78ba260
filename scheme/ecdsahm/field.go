package ecdsahm

import (
	"encoding/hex"
	"fmt"
	"io"
	"sync"

	"filippo.io/bigmod"
)

// This file is the scalar field Z_n, n the order of the P-256 group, on filippo.io/bigmod
// (constant time: nistec does not export its order-field arithmetic). Every operation on a
// secret runs in time independent of its value; the few variable-time ones (InverseVarTime) are
// used only on public values (Lagrange denominators, the opened w), and say so.

// ScalarSize is the length of a scalar's encoding: 32 bytes, big-endian, below n.
const ScalarSize = 32

// orderHex is n, the order of the P-256 base point (SEC 2, section 2.4.2; FIPS 186-5).
const orderHex = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"

var (
	orderBytes = mustHex(orderHex)
	order      = mustModulus(orderBytes)
	// orderMinus2 is the exponent of Fermat's inverse, s^(n-2) = s^-1.
	orderMinus2 = func() []byte {
		b := append([]byte(nil), orderBytes...)
		b[len(b)-1] -= 2 // n ends in 0x51: no borrow
		return b
	}()
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func mustModulus(b []byte) *bigmod.Modulus {
	m, err := bigmod.NewModulus(b)
	if err != nil {
		panic(err)
	}
	return m
}

// Scalar is an element of Z_n. The zero value is not usable: make one with NewScalar or one of
// the decoders. Methods set the receiver and return it, as in filippo.io/nistec and math/big.
type Scalar struct{ v *bigmod.Nat }

// NewScalar returns the scalar 0.
func NewScalar() *Scalar { return &Scalar{v: bigmod.NewNat().ExpandFor(order)} }

// ScalarFromUint returns the scalar u mod n (u is public: an index).
func ScalarFromUint(u uint) *Scalar {
	return &Scalar{v: bigmod.NewNat().Mod(bigmod.NewNat().SetUint(u), order)}
}

// DecodeScalar decodes 32 big-endian bytes that must be below n. Zero is accepted (shares of
// zero sharings can be zero); callers that need a non-zero scalar check IsZero.
func DecodeScalar(b []byte) (*Scalar, error) {
	if len(b) != ScalarSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrInvalidScalar, len(b))
	}
	v, err := bigmod.NewNat().SetBytes(b, order)
	if err != nil {
		return nil, fmt.Errorf("%w: not below n", ErrInvalidScalar)
	}
	return &Scalar{v: v}, nil
}

// scalarReduce returns the 32-byte big-endian b reduced modulo n (b may be up to 2^256-1:
// n has 256 bits, so SetOverflowingBytes reduces with one conditional subtraction).
func scalarReduce(b []byte) (*Scalar, error) {
	if len(b) != ScalarSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrInvalidScalar, len(b))
	}
	v, err := bigmod.NewNat().SetOverflowingBytes(b, order)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidScalar, err)
	}
	return &Scalar{v: v}, nil
}

// RandomScalar returns a uniform scalar in [0, n) from rnd, by rejection sampling of 32-byte
// strings (a rejection happens with probability below 2^-32 and reveals only that a discarded
// candidate was ≥ n).
func RandomScalar(rnd io.Reader) (*Scalar, error) {
	var b [ScalarSize]byte
	defer clear(b[:])
	for range 64 {
		if _, err := io.ReadFull(rnd, b[:]); err != nil {
			return nil, fmt.Errorf("ecdsahm: reading randomness: %w", err)
		}
		if v, err := bigmod.NewNat().SetBytes(b[:], order); err == nil {
			return &Scalar{v: v}, nil
		}
	}
	return nil, fmt.Errorf("ecdsahm: the randomness source is broken")
}

// Bytes returns the 32-byte big-endian encoding.
func (s *Scalar) Bytes() []byte { return s.v.Bytes(order) }

// Set sets s = x.
func (s *Scalar) Set(x *Scalar) *Scalar {
	s.v = bigmod.NewNat().ExpandFor(order).Add(x.v, order)
	return s
}

// Copy returns a new scalar equal to s.
func (s *Scalar) Copy() *Scalar { return NewScalar().Set(s) }

// Add sets s = x + y.
func (s *Scalar) Add(x, y *Scalar) *Scalar {
	v := bigmod.NewNat().ExpandFor(order).Add(x.v, order)
	s.v = v.Add(y.v, order)
	return s
}

// Sub sets s = x - y.
func (s *Scalar) Sub(x, y *Scalar) *Scalar {
	v := bigmod.NewNat().ExpandFor(order).Add(x.v, order)
	s.v = v.Sub(y.v, order)
	return s
}

// Neg sets s = -x.
func (s *Scalar) Neg(x *Scalar) *Scalar {
	s.v = bigmod.NewNat().ExpandFor(order).Sub(x.v, order)
	return s
}

// Mul sets s = x·y.
func (s *Scalar) Mul(x, y *Scalar) *Scalar {
	v := bigmod.NewNat().ExpandFor(order).Add(x.v, order)
	s.v = v.Mul(y.v, order)
	return s
}

// Invert sets s = x^-1 (0 for x = 0) in constant time, by Fermat: x^(n-2).
func (s *Scalar) Invert(x *Scalar) *Scalar {
	s.v = bigmod.NewNat().Exp(x.v, orderMinus2, order)
	return s
}

// InvertVarTime sets s = x^-1 for a public x ≠ 0 (variable time: Lagrange denominators, the
// opened w). It returns false for x = 0.
func (s *Scalar) InvertVarTime(x *Scalar) (*Scalar, bool) {
	v, ok := bigmod.NewNat().InverseVarTime(x.v, order)
	if !ok {
		return s, false
	}
	s.v = v
	return s, true
}

// IsZero reports whether s = 0, in constant time.
func (s *Scalar) IsZero() bool { return s.v.IsZero() == 1 }

// Equal reports whether s = x, in constant time.
func (s *Scalar) Equal(x *Scalar) bool { return s.v.Equal(x.v) == 1 }

// Wipe overwrites s with zero.
func (s *Scalar) Wipe() {
	if s == nil || s.v == nil {
		return
	}
	z := bigmod.NewNat().ExpandFor(order)
	// Sub(self) zeroes the limbs in place (bigmod operates on the receiver's limbs).
	s.v.Sub(s.v, order)
	s.v = z
}

// digestScalar is ECDSA's bits2int followed by reduction mod n, as crypto/ecdsa does it
// (FIPS 186-5, section 6.4.1, step 4; SEC 1, section 4.1.3, step 5): the leftmost 256 bits of
// the digest (a shorter digest is its own value), reduced modulo n.
func digestScalar(digest []byte) (*Scalar, error) {
	if len(digest) == 0 || len(digest) > MaxDigest {
		return nil, fmt.Errorf("%w: digest of %d bytes", ErrInvalidParams, len(digest))
	}
	var b [ScalarSize]byte
	if len(digest) >= ScalarSize {
		copy(b[:], digest[:ScalarSize])
	} else {
		copy(b[ScalarSize-len(digest):], digest)
	}
	return scalarReduce(b[:])
}

// lagrangeAt returns the Lagrange coefficients, at x, of the interpolation over the distinct
// public indices set: λ_i(x) = Π_{j≠i} (x - j)/(i - j). Indices are public; the inversions
// run in variable time. The result is shared (memoised: a key has few signer sets, and the
// inversions were a quarter of a presignature's cost): callers must not modify it.
func lagrangeAt(set []int, x int) []*Scalar {
	key := make([]byte, 0, len(set)+1)
	key = append(key, byte(x))
	for _, i := range set {
		key = append(key, byte(i))
	}
	lagrangeMu.Lock()
	l, ok := lagrangeMemo[string(key)]
	lagrangeMu.Unlock()
	if ok {
		return l
	}
	l = lagrangeCompute(set, x)
	lagrangeMu.Lock()
	if len(lagrangeMemo) >= 1<<14 {
		clear(lagrangeMemo)
	}
	lagrangeMemo[string(key)] = l
	lagrangeMu.Unlock()
	return l
}

var (
	lagrangeMu   sync.Mutex
	lagrangeMemo = map[string][]*Scalar{}
)

func lagrangeCompute(set []int, x int) []*Scalar {
	out := make([]*Scalar, len(set))
	xs := ScalarFromUint(uint(x))
	for a, i := range set {
		num, den := ScalarFromUint(1), ScalarFromUint(1)
		si := ScalarFromUint(uint(i))
		for _, j := range set {
			if j == i {
				continue
			}
			sj := ScalarFromUint(uint(j))
			num.Mul(num, NewScalar().Sub(xs, sj))
			den.Mul(den, NewScalar().Sub(si, sj))
		}
		inv, ok := NewScalar().InvertVarTime(den)
		if !ok {
			panic("ecdsahm: repeated index in a Lagrange set") // callers check distinctness
		}
		out[a] = num.Mul(num, inv)
	}
	return out
}

// poly is a polynomial over Z_n, coefficients from degree 0 up.
type poly []*Scalar

// randomPoly returns a uniformly random polynomial of degree (at most) deg with constant term
// c (nil: random).
func randomPoly(rnd io.Reader, deg int, c *Scalar) (poly, error) {
	p := make(poly, deg+1)
	for i := range p {
		if i == 0 && c != nil {
			p[0] = c.Copy()
			continue
		}
		s, err := RandomScalar(rnd)
		if err != nil {
			return nil, err
		}
		p[i] = s
	}
	return p, nil
}

// eval returns p(x) by Horner's rule.
func (p poly) eval(x int) *Scalar {
	xs := ScalarFromUint(uint(x))
	acc := NewScalar()
	for i := len(p) - 1; i >= 0; i-- {
		acc.Mul(acc, xs)
		acc.Add(acc, p[i])
	}
	return acc
}

func (p poly) wipe() {
	for _, c := range p {
		c.Wipe()
	}
}
