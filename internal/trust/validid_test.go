package trust

import (
	"math/rand/v2"
	"testing"
)

// TestValidIDMatchesPatterns: the byte-by-byte checks accept exactly what the regular
// expressions they replace on hot paths accept.
func TestValidIDMatchesPatterns(t *testing.T) {
	alphabet := "aZ09._-fgA/ \x00é"
	fixed := []string{"", "a", "-a", ".a", "_a", "a-", "node-1", "a.b_c-D", "é", "a b",
		"0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdeF", "0123456789abcdef0123456789abcde",
		string(make([]byte, 64)), "a" + string(make([]byte, 63))}
	long := make([]byte, 0, 70)
	for range 70 {
		long = append(long, 'a')
	}
	fixed = append(fixed, string(long[:64]), string(long[:65]))
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		n := r.IntN(70)
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		fixed = append(fixed, string(b))
		h := make([]byte, 30+r.IntN(4))
		for i := range h {
			h[i] = "0123456789abcdefG"[r.IntN(17)]
		}
		fixed = append(fixed, string(h))
	}
	for _, s := range fixed {
		if got, want := validID(s), idPattern.MatchString(s); got != want {
			t.Fatalf("validID(%q) = %v, idPattern says %v", s, got, want)
		}
		if got, want := ValidKeyID(s), keyIDPattern.MatchString(s); got != want {
			t.Fatalf("ValidKeyID(%q) = %v, keyIDPattern says %v", s, got, want)
		}
	}
}
