package dkg

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"testing"

	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/frost"
)

// runDKG runs a k-of-n DKG in process among the participants in alive (1-based; the others
// send nothing), delivering each step's messages to their recipients; tamper may rewrite a
// message in flight (nil: none). It returns each alive participant's DKG.
func runDKG(t testing.TB, k, n int, alive []int, tamper func(step int, m *scheme.Message)) (map[int]*DKG, error) {
	t.Helper()
	r, err := runDKGFull(t, k, n, alive, tamper)
	return r.ds, err
}

// dkgRun is what runDKGFull leaves: every participant's long-term keys, the alive
// participants' DKGs, and the step-0 messages addressed to participants not alive (as a
// relaying client keeps them for a late share).
type dkgRun struct {
	secrets, pubs [][]byte
	ds            map[int]*DKG
	lost          []scheme.Message
}

func (r *dkgRun) params(i int) scheme.DKGParams {
	return scheme.DKGParams{Session: []byte("key-1"), Secret: r.secrets[i-1], Public: r.pubs}
}

func runDKGFull(t testing.TB, k, n int, alive []int, tamper func(step int, m *scheme.Message)) (*dkgRun, error) {
	t.Helper()
	secrets := make([][]byte, n)
	pubs := make([][]byte, n)
	for i := range n {
		s, p, err := GenerateDKGKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		secrets[i], pubs[i] = s, p
	}
	ds := map[int]*DKG{}
	run := &dkgRun{secrets: secrets, pubs: pubs, ds: ds}
	for _, i := range alive {
		d, err := NewDKG(i, k, scheme.DKGParams{Session: []byte("key-1"), Secret: secrets[i-1], Public: pubs}, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ds[i] = d
	}
	inbox := map[int][]scheme.Message{}
	for step := 0; step < 4; step++ {
		next := map[int][]scheme.Message{}
		var firstErr error
		for _, i := range alive {
			out, done, err := ds[i].Step(inbox[i])
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("participant %d: %w", i, err)
				}
				continue
			}
			if done != (step == 3) {
				t.Fatalf("participant %d done=%v at step %d", i, done, step)
			}
			for _, m := range out {
				if tamper != nil {
					tamper(step, &m)
				}
				for _, j := range alive {
					if j != i && (m.To == 0 || m.To == j) {
						next[j] = append(next[j], m)
					}
				}
				if step == 0 && !slices.Contains(alive, m.To) {
					run.lost = append(run.lost, m)
				}
			}
		}
		if firstErr != nil {
			return run, firstErr
		}
		inbox = next
	}
	return run, nil
}

// keyOf checks that every DKG agrees on the public key and returns it with the shares.
func keyOf(t testing.TB, ds map[int]*DKG) (*frost.PublicKey, map[int]*frost.SecretShare) {
	t.Helper()
	var pk *frost.PublicKey
	shares := map[int]*frost.SecretShare{}
	for i, d := range ds {
		p, s, err := d.Result()
		if err != nil {
			t.Fatalf("participant %d: %v", i, err)
		}
		if pk == nil {
			pk = p.(*frost.PublicKey)
		} else if string(pk.EncodeParams()) != string(p.(*frost.PublicKey).EncodeParams()) {
			t.Fatalf("participant %d has another key", i)
		}
		shares[i] = s.(*frost.SecretShare)
	}
	return pk, shares
}

// signWith runs a whole signature through the scheme boundary: commit requests, pool entries,
// NewSession, each signer's Respond, Accept and Finish.
func signWith(t testing.TB, pk *frost.PublicKey, parts map[int]*frost.Participant, signers []int, msg []byte) ([]byte, scheme.Coordinator, error) {
	t.Helper()
	var sch frost.Scheme
	ctx := context.Background()
	commits := map[int]scheme.Commitment{}
	for _, i := range signers {
		req, err := sch.CommitRequest(pk, 1)
		if err != nil {
			t.Fatal(err)
		}
		req.Requester = "client"
		rep, err := parts[i].Respond(ctx, rand.Reader, req)
		if err != nil {
			t.Fatal(err)
		}
		cs, _, err := sch.ParseCommitments(pk, i, rep)
		if err != nil || len(cs) != 1 {
			t.Fatalf("ParseCommitments: %v", err)
		}
		commits[i] = cs[0]
	}
	co, err := sch.NewSession(pk, scheme.EDDSA, msg, commits)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range signers {
		req, err := co.Request(i)
		if err != nil {
			t.Fatal(err)
		}
		req.Requester = "client"
		rep, err := parts[i].Respond(ctx, rand.Reader, req)
		if err != nil {
			t.Fatal(err)
		}
		if err := co.Accept(i, rep); err != nil {
			t.Fatal(err)
		}
	}
	sig, err := co.Finish()
	return sig, co, err
}

func participants(t testing.TB, pk *frost.PublicKey, shares map[int]*frost.SecretShare, o frost.Options) map[int]*frost.Participant {
	t.Helper()
	out := map[int]*frost.Participant{}
	for i, s := range shares {
		p, err := frost.NewParticipant(pk, s, o)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = p
	}
	return out
}
