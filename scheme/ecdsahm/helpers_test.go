package ecdsahm

import (
	"crypto/rand"
	"fmt"
	"testing"

	"filippo.io/edwards25519"

	"github.com/tchsm/tchsm/scheme"
)

// channels makes n participants' channels from fresh long-term keys (as the manifest holds).
func channels(tb testing.TB, n int) []*Channel {
	tb.Helper()
	secrets := make([][]byte, n)
	publics := make([][]byte, n)
	for i := range n {
		var wide [64]byte
		rand.Read(wide[:])
		s, err := edwards25519.NewScalar().SetUniformBytes(wide[:])
		if err != nil {
			tb.Fatal(err)
		}
		secrets[i] = s.Bytes()
		publics[i] = new(edwards25519.Point).ScalarBaseMult(s).Bytes()
	}
	chs := make([]*Channel, n)
	for i := range n {
		ch, err := NewChannel(i+1, secrets[i], publics)
		if err != nil {
			tb.Fatal(err)
		}
		chs[i] = ch
	}
	return chs
}

// stepper is a KeyGen or a Presign.
type stepper interface {
	Step([]scheme.Message) ([]scheme.Message, bool, error)
}

// tamper, when set, may change a message in flight (the relay is the coordinator).
type tamper func(round int, m *scheme.Message)

// run relays the rounds among participants (index → stepper) until done; it returns the first
// error, with the participant that reported it.
func run(parts map[int]stepper, tam tamper) (int, error) {
	var msgs []scheme.Message
	for round := 0; ; round++ {
		var next []scheme.Message
		doneAll := true
		for i, p := range parts {
			var in []scheme.Message
			for _, m := range msgs {
				if m.To == i {
					in = append(in, m)
				}
			}
			out, done, err := p.Step(in)
			if err != nil {
				return i, err
			}
			doneAll = doneAll && done
			next = append(next, out...)
		}
		if doneAll {
			return 0, nil
		}
		if tam != nil {
			for k := range next {
				tam(round+1, &next[k])
			}
		}
		msgs = next
		if round > 10 {
			return 0, fmt.Errorf("no end")
		}
	}
}

type cluster struct {
	chs    []*Channel
	pk     *PublicKey
	shares []*SecretShare // shares[i-1]
	keyID  []byte
}

func newCluster(tb testing.TB, n, t int) *cluster {
	tb.Helper()
	chs := channels(tb, n)
	keyID := make([]byte, 16)
	rand.Read(keyID)
	parts := map[int]stepper{}
	gens := make([]*KeyGen, n)
	for i := range n {
		g, err := NewKeyGen(chs[i], t, keyID, nil)
		if err != nil {
			tb.Fatal(err)
		}
		gens[i], parts[i+1] = g, g
	}
	if who, err := run(parts, nil); err != nil {
		tb.Fatalf("key generation: participant %d: %v", who, err)
	}
	c := &cluster{chs: chs, keyID: keyID}
	for i, g := range gens {
		pk, sh, err := g.Result()
		if err != nil {
			tb.Fatal(err)
		}
		if c.pk == nil {
			c.pk = pk
		} else if !c.pk.Equal(pk) {
			tb.Fatalf("participant %d computed another public key", i+1)
		}
		c.shares = append(c.shares, sh)
	}
	return c
}

// presign runs a batch among set and returns each member's presignatures.
func (c *cluster) presign(tb testing.TB, set []int, count int, tam tamper) (map[int][]*Presignature, error) {
	tb.Helper()
	batch := make([]byte, 16)
	rand.Read(batch)
	parts := map[int]stepper{}
	ps := map[int]*Presign{}
	for _, i := range set {
		p, err := NewPresign(c.chs[i-1], c.pk, c.shares[i-1], PresignParams{KeyID: c.keyID, Set: set, Batch: batch, Count: count}, nil)
		if err != nil {
			return nil, err
		}
		ps[i], parts[i] = p, p
	}
	if who, err := run(parts, tam); err != nil {
		return nil, fmt.Errorf("participant %d: %w", who, err)
	}
	out := map[int][]*Presignature{}
	for i, p := range ps {
		r, err := p.Result()
		if err != nil {
			return nil, err
		}
		out[i] = r
	}
	return out, nil
}

func (c *cluster) request(p *Presignature, digest []byte) SignRequest {
	return SignRequest{KeyID: c.keyID, ID: p.ID(), Set: p.Set(), Digest: digest}
}

// public agrees on presignature b's public part.
func (c *cluster) public(tb testing.TB, pres map[int][]*Presignature, b int) PresignPublic {
	tb.Helper()
	reps := map[int]PresignPublic{}
	for i, ps := range pres {
		reps[i] = ps[b].Public()
	}
	pp, err := Agree(c.pk, reps)
	if err != nil {
		tb.Fatal(err)
	}
	return pp
}

// randomSet picks 2t+1 of 1..n, increasing.
func randomSet(n, t int) []int {
	var b [1]byte
	in := make([]bool, n+1)
	for cnt := 0; cnt < 2*t+1; {
		rand.Read(b[:])
		i := int(b[0])%n + 1
		if !in[i] {
			in[i] = true
			cnt++
		}
	}
	var set []int
	for i := 1; i <= n; i++ {
		if in[i] {
			set = append(set, i)
		}
	}
	return set
}
