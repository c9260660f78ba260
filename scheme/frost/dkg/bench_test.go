package dkg

import "testing"

// BenchmarkDKG_3of5: the whole in-process DKG, five participants on one machine.
func BenchmarkDKG_3of5(b *testing.B) {
	for b.Loop() {
		if _, err := runDKG(b, 3, 5, []int{1, 2, 3, 4, 5}, nil); err != nil {
			b.Fatal(err)
		}
	}
}
