package dkg

import (
	"testing"

	"github.com/tchsm/tchsm/scheme"
)

// FuzzDKGMessages feeds arbitrary bytes to each DKG decoder, and as a message to each step.
func FuzzDKGMessages(f *testing.F) {
	s, p, _ := GenerateDKGKey(nil)
	_, p2, _ := GenerateDKGKey(nil)
	_, p3, _ := GenerateDKGKey(nil)
	params := scheme.DKGParams{Session: []byte("s"), Secret: s, Public: [][]byte{p, p2, p3}}
	d, err := NewDKG(1, 2, params, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{tagDeal, 0, 0, 0, 1})
	f.Add(append([]byte{tagResponses, 0, 0, 0, 0}, make([]byte, 64)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeDeal(b)
		_, _, _ = decodeResponses(b, 3)
		_, _, _ = d.decodeJustifications(b)
		_, _ = d.open(2, 1, tagDeal, b)
		for step := 0; step < 4; step++ {
			x, _ := NewDKG(1, 2, params, nil)
			x.step = step
			_, _, _ = x.Step([]scheme.Message{{From: 2, To: 1, Payload: b}, {From: 3, To: 0, Payload: b}})
		}
	})
}
