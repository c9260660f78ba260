package modexp_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/modexp"
	"github.com/tchsm/tchsm/internal/modexp/openssl"
)

// engines are the engines under test: every linked one, so that one `go test` checks every
// path the node can take, whatever $TCHSM_MODEXP says.
func engines(t *testing.T) []modexp.Engine {
	all := modexp.Engines()
	want := []string{"bigmod"}
	if openssl.Linked {
		want = append(want, "openssl")
	}
	if len(all) != len(want) {
		t.Fatalf("engines linked: %d, want %v", len(all), want)
	}
	for i, e := range all {
		if e.Name() != want[i] {
			t.Fatalf("engine %d is %q, want %q", i, e.Name(), want[i])
		}
	}
	return all
}

type kat struct {
	Bits                 int
	N, Base, Exp, Result string
}

func unhex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKnownAnswers checks every engine against testdata/kat.json (Python's pow(); see
// testdata/gen_kat.py): 1024 to 4096 bits, exponents of the modulus's length and 512 bits longer,
// and the edges (zero and all-ones exponents, bases 0, 1 and N-1).
func TestKnownAnswers(t *testing.T) {
	raw, err := os.ReadFile("testdata/kat.json")
	if err != nil {
		t.Fatal(err)
	}
	var kats []kat
	if err := json.Unmarshal(raw, &kats); err != nil {
		t.Fatal(err)
	}
	sizes := map[int]int{}
	for _, k := range kats {
		sizes[k.Bits]++
	}
	for _, bits := range []int{2048, 3072, 4096} {
		if sizes[bits] < 5 {
			t.Fatalf("testdata has %d cases at %d bits", sizes[bits], bits)
		}
	}
	for _, e := range engines(t) {
		for i, k := range kats {
			m, err := modexp.NewModulus(unhex(t, k.N))
			if err != nil {
				t.Fatal(err)
			}
			got, err := e.Exp(m, unhex(t, k.Base), unhex(t, k.Exp))
			if err != nil {
				t.Fatalf("%s case %d (%d bits): %v", e.Name(), i, k.Bits, err)
			}
			if !bytes.Equal(got, unhex(t, k.Result)) {
				t.Errorf("%s case %d (%d bits): wrong result", e.Name(), i, k.Bits)
			}
		}
	}
}

// TestCrossCheck compares every engine with math/big on random moduli, bases and exponents.
func TestCrossCheck(t *testing.T) {
	rounds := 8
	if testing.Short() {
		rounds = 2
	}
	for _, bits := range []int{1024, 2048, 3072, 4096} {
		size := bits / 8
		for range rounds {
			n := randBits(t, bits)
			n.SetBit(n, bits-1, 1).SetBit(n, 0, 1)
			m, err := modexp.NewModulus(n.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			base, err := rand.Int(rand.Reader, n)
			if err != nil {
				t.Fatal(err)
			}
			for _, expBits := range []int{bits, bits + 512} {
				exp := randBits(t, expBits)
				want := new(big.Int).Exp(base, exp, n).FillBytes(make([]byte, size))
				for _, e := range engines(t) {
					got, err := e.Exp(m, base.FillBytes(make([]byte, size)), exp.FillBytes(make([]byte, expBits/8)))
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, want) {
						t.Errorf("%s: %d-bit modulus, %d-bit exponent: differs from math/big", e.Name(), bits, expBits)
					}
				}
			}
		}
	}
}

func randBits(t *testing.T, bits int) *big.Int {
	b := make([]byte, bits/8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return new(big.Int).SetBytes(b)
}

// TestRefusals: every engine refuses a base of the wrong length or not reduced; NewModulus
// refuses even moduli, 1 and empty input.
func TestRefusals(t *testing.T) {
	for _, n := range [][]byte{nil, {0}, {1}, {0, 1}, {0x10, 0x00}} {
		if _, err := modexp.NewModulus(n); !errors.Is(err, modexp.ErrInput) {
			t.Errorf("NewModulus(%x): %v, want ErrInput", n, err)
		}
	}
	m, err := modexp.NewModulus([]byte{0xc5, 0x01})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range engines(t) {
		for _, base := range [][]byte{nil, {1}, {0, 0, 1}, {0xc5, 0x01}, {0xff, 0xff}} {
			if _, err := e.Exp(m, base, []byte{3}); !errors.Is(err, modexp.ErrInput) {
				t.Errorf("%s: base %x: %v, want ErrInput", e.Name(), base, err)
			}
		}
		got, err := e.Exp(m, []byte{0x00, 0x02}, nil)
		if err != nil || !bytes.Equal(got, []byte{0, 1}) {
			t.Errorf("%s: 2^(empty) = %x, %v; want 0001", e.Name(), got, err)
		}
	}
}

// TestSelected: $TCHSM_MODEXP forces an engine (make test runs the packages that compute shares
// with each); without it the last linked engine is used.
func TestSelected(t *testing.T) {
	e, err := modexp.Selected()
	want := os.Getenv(modexp.EnvVar)
	if want == "" {
		all := modexp.Engines()
		want = all[len(all)-1].Name()
	}
	if err != nil || e.Name() != want {
		t.Fatalf("Selected() = %v, %v; want %q", e, err, want)
	}
	if _, err := modexp.Lookup("nonesuch"); !errors.Is(err, modexp.ErrUnknownEngine) {
		t.Errorf("Lookup(nonesuch): %v", err)
	}
}

// TestConcurrent: goroutines share one Modulus (and so the openssl engine's Montgomery context,
// created by whichever first use wins) and all get math/big's answer.
func TestConcurrent(t *testing.T) {
	n := randBits(t, 2048)
	n.SetBit(n, 2047, 1).SetBit(n, 0, 1)
	for _, e := range engines(t) {
		m, err := modexp.NewModulus(n.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		const workers = 8
		errs := make(chan error, workers)
		for range workers {
			base, err := rand.Int(rand.Reader, n)
			if err != nil {
				t.Fatal(err)
			}
			exp := randBits(t, 2048)
			go func() {
				want := new(big.Int).Exp(base, exp, n).FillBytes(make([]byte, 256))
				got, err := e.Exp(m, base.FillBytes(make([]byte, 256)), exp.FillBytes(make([]byte, 256)))
				if err == nil && !bytes.Equal(got, want) {
					err = errors.New("differs from math/big")
				}
				errs <- err
			}()
		}
		for range workers {
			if err := <-errs; err != nil {
				t.Errorf("%s: %v", e.Name(), err)
			}
		}
	}
}

// TestCPUTime: the engine Selected returns counts its exponentiations' thread CPU time (the
// node's tchsm_process_modexp_cpu_seconds_total; issue 17's CPU outside the arithmetic is the
// process's CPU minus it); the bare engines do not.
func TestCPUTime(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("no thread CPU clock")
	}
	n := make([]byte, 256)
	rand.Read(n)
	n[0] |= 0x80
	n[255] |= 1
	m, err := modexp.NewModulus(n)
	if err != nil {
		t.Fatal(err)
	}
	base := make([]byte, 256)
	base[255] = 3
	exp := make([]byte, 256)
	rand.Read(exp)
	e, err := modexp.Selected()
	if err != nil {
		t.Fatal(err)
	}
	c0 := modexp.CPUTime()
	for _, bare := range modexp.Engines() {
		if _, err := bare.Exp(m, base, exp); err != nil {
			t.Fatal(err)
		}
	}
	if d := modexp.CPUTime() - c0; d != 0 {
		t.Fatalf("bare engines counted %v", d)
	}
	got, err := e.Exp(m, base, exp)
	if err != nil {
		t.Fatal(err)
	}
	want := new(big.Int).Exp(new(big.Int).SetBytes(base), new(big.Int).SetBytes(exp), new(big.Int).SetBytes(n))
	if new(big.Int).SetBytes(got).Cmp(want) != 0 {
		t.Fatal("the timed engine computed a wrong result")
	}
	if d := modexp.CPUTime() - c0; d <= 0 || d > 10*time.Second {
		t.Fatalf("a 2048-bit exponentiation counted %v", d)
	}
}
