package frost

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/tchsm/tchsm/scheme"
)

// signWith runs a whole signature through the scheme boundary: commit requests, pool entries,
// NewSession, each signer's Respond, Accept and Finish.
func signWith(t testing.TB, pk *PublicKey, parts map[int]*Participant, signers []int, msg []byte) ([]byte, scheme.Coordinator, error) {
	t.Helper()
	var sch Scheme
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

func participants(t testing.TB, pk *PublicKey, shares map[int]*SecretShare, o Options) map[int]*Participant {
	t.Helper()
	out := map[int]*Participant{}
	for i, s := range shares {
		p, err := NewParticipant(pk, s, o)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = p
	}
	return out
}

func bytesOf(b byte, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}
