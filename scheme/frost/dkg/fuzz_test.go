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

// FuzzReshareMessages feeds arbitrary bytes, as a message from another participant, to each
// step of a resharing, on a holder and on a participant that only receives: no panic, and a
// step that accepts the junk goes on as if the sender were absent.
func FuzzReshareMessages(f *testing.F) {
	run, err := runDKGFull(f, 2, 3, []int{1, 2, 3}, nil)
	if err != nil {
		f.Fatal(err)
	}
	pk, shares := keyOf(f, run.ds)
	for step := range uint8(4) {
		f.Add(step, uint8(0), []byte{tagDeal, 0, 0, 0, 1})
		f.Add(step, uint8(1), append([]byte{tagResponses, 0, 1, 0, 0, 0, 0}, make([]byte, 64)...))
		f.Add(step, uint8(0), append([]byte{tagJustifications, 0, 0, 0, 0}, make([]byte, 64)...))
	}
	f.Fuzz(func(t *testing.T, step, holder uint8, b []byte) {
		held := shares[1]
		if holder%2 == 1 {
			held = nil
		}
		x, err := NewReshare(1, run.params(1), pk, held, nil)
		if err != nil {
			t.Fatal(err)
		}
		x.step = int(step % 4)
		_, _, _ = x.Step([]scheme.Message{{From: 2, To: 1, Payload: b}, {From: 3, To: 0, Payload: b}})
	})
}
