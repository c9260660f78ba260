package frost

import (
	"context"
	"crypto/rand"
	"testing"

	"filippo.io/edwards25519"

	"github.com/tchsm/tchsm/scheme"
)

// BenchmarkSignShare_3of5: one signer's round two (list checks, binding factors, group
// commitment, challenge, z_i), with the nonce taken from the store.
func BenchmarkSignShare_3of5(b *testing.B) {
	pk, shares := dealKey(b, 3, 5)
	parts := participants(b, pk, shares, Options{MaxOutstanding: 1 << 20})
	msg := make([]byte, 120)
	others := map[int]Commitment{}
	for _, i := range []int{2, 3} {
		cs, _ := parts[i].Commit(rand.Reader, "b", 1)
		others[i] = cs[0]
	}
	for b.Loop() {
		b.StopTimer()
		c1, _ := parts[1].Commit(rand.Reader, "b", 1)
		list := []Commitment{c1[0], others[2], others[3]}
		b.StartTimer()
		if _, err := parts[1].Sign("b", msg, list); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommit: one nonce pair and its commitments.
func BenchmarkCommit(b *testing.B) {
	pk, shares := dealKey(b, 3, 5)
	p, _ := NewParticipant(pk, shares[1], Options{MaxOutstanding: 1 << 30})
	for b.Loop() {
		if _, err := p.Commit(rand.Reader, "b", 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAggregate_3of5: the coordinator's side: NewSession (binding factors, group
// commitment, challenge), Accept of the three shares, Finish (sum and crypto/ed25519.Verify).
func BenchmarkAggregate_3of5(b *testing.B) {
	pk, shares := dealKey(b, 3, 5)
	parts := participants(b, pk, shares, Options{})
	msg := make([]byte, 120)
	var sch Scheme
	commits := map[int]scheme.Commitment{}
	var reps []scheme.Reply
	for _, i := range []int{1, 2, 3} {
		cs, _ := parts[i].Commit(rand.Reader, "b", 1)
		commits[i] = &poolCommitment{c: cs[0]}
	}
	co, _ := sch.NewSession(pk, scheme.EDDSA, msg, commits)
	for _, i := range []int{1, 2, 3} {
		req, _ := co.Request(i)
		req.Requester = "b"
		rep, err := parts[i].Respond(context.Background(), nil, req)
		if err != nil {
			b.Fatal(err)
		}
		reps = append(reps, rep)
	}
	for b.Loop() {
		co, err := sch.NewSession(pk, scheme.EDDSA, msg, commits)
		if err != nil {
			b.Fatal(err)
		}
		for j, i := range []int{1, 2, 3} {
			if err := co.Accept(i, reps[j]); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := co.Finish(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJudge_3of5: checking the three shares after a failed aggregate.
func BenchmarkJudge_3of5(b *testing.B) {
	pk, shares := dealKey(b, 3, 5)
	parts := participants(b, pk, shares, Options{})
	msg := make([]byte, 120)
	var list []Commitment
	for _, i := range []int{1, 2, 3} {
		cs, _ := parts[i].Commit(rand.Reader, "b", 1)
		list = append(list, cs[0])
	}
	co, _ := NewCoordinator(pk, msg, list)
	for _, i := range []int{1, 2, 3} {
		req, _ := co.Request(i)
		req.Requester = "b"
		rep, _ := parts[i].Respond(context.Background(), nil, req)
		co.Accept(i, rep)
	}
	for b.Loop() {
		for _, i := range []int{1, 2, 3} {
			if err := co.Judge(i, scheme.Reply{}); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkDecodeElement: one element from the wire: decoding (a square root), the canonical
// and identity checks, and the prime-order subgroup check ([L]P).
func BenchmarkDecodeElement(b *testing.B) {
	e := new(edwards25519.Point).ScalarBaseMult(identifierScalar(12345)).Bytes()
	for b.Loop() {
		if _, err := DecodeElement(e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRespondSign_3of5: a node's whole round two from the request payload, as the node
// runs it: parsing the sign request, checking the other signers' four elements (its own entry
// is the commitment it handed out), binding factors, group commitment, challenge, z_i.
func BenchmarkRespondSign_3of5(b *testing.B) {
	pk, shares := dealKey(b, 3, 5)
	parts := participants(b, pk, shares, Options{MaxOutstanding: 1 << 20})
	msg := make([]byte, 150)
	others := map[int]Commitment{}
	for _, i := range []int{2, 3} {
		cs, _ := parts[i].Commit(rand.Reader, "b", 1)
		others[i] = cs[0]
	}
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		c1, _ := parts[1].Commit(rand.Reader, "b", 1)
		payload, err := EncodeSignRequest(msg, []Commitment{c1[0], others[2], others[3]})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := parts[1].Respond(ctx, nil, scheme.Request{Round: 1, Payload: payload, Requester: "b"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseCommitments_64: the client's side of one commit reply of 64 commitments (every
// element decoded and checked, once).
func BenchmarkParseCommitments_64(b *testing.B) {
	pk, shares := dealKey(b, 3, 5)
	p, _ := NewParticipant(pk, shares[1], Options{})
	cs, _ := p.Commit(rand.Reader, "b", 64)
	rep := scheme.Reply{Payload: EncodeCommitReply(DefaultTTL, cs)}
	var sch Scheme
	for b.Loop() {
		if _, _, err := sch.ParseCommitments(pk, 1, rep); err != nil {
			b.Fatal(err)
		}
	}
}
