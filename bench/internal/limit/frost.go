package limit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"runtime"
	"time"

	"filippo.io/edwards25519"

	"github.com/tchsm/tchsm/scheme"
	"github.com/tchsm/tchsm/scheme/frost"
)

// FROSTArith is the arithmetic of one threshold Ed25519 signature (FROST(Ed25519, SHA-512),
// k of n), in CPU time on one thread, split by who does it:
//
//   - NodeMS: the k signers' work: each hands out one commitment (Commit, amortised over a
//     batch of 64 as the client fetches them) and answers one sign request (Respond: parsing,
//     checking the other signers' commitments, binding factors, group commitment, challenge,
//     z_i).
//   - ClientMS: the coordinator's: decoding and checking k commitments from commit replies
//     (ParseCommitments, amortised), NewSession, Accept of k shares, Finish (aggregation and
//     crypto/ed25519.Verify).
//
// Everything the cluster spends per signature beyond these is messaging: envelopes (signing,
// verifying, encrypting), the broker client, protobuf, PKCS#11, scheduling.
type FROSTArith struct {
	K, N       int
	NodeMS     float64 `json:"node_ms"`
	ClientMS   float64 `json:"client_ms"`
	TotalMS    float64 `json:"total_ms"`
	Signatures int     `json:"signatures"`
}

// MeasureFROST times whole in-process FROST signatures through the scheme boundary for about
// d, on a locked thread's CPU clock (CLOCK_THREAD_CPUTIME_ID), so other load on the machine
// slows it less than wall-clock timing would.
func MeasureFROST(ctx context.Context, k, n int, d time.Duration) (*FROSTArith, error) {
	if k < 1 || n < k {
		return nil, fmt.Errorf("limit: FROST %d of %d", k, n)
	}
	pk, parts, err := frostKey(k, n)
	if err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var sch frost.Scheme
	const batch = 64
	msg := make([]byte, 150)
	var node, client time.Duration
	// The commitments' cost is charged per commitment used (fetched in batches, most of the
	// last batches unused when the timing stops).
	var commitNode, commitClient time.Duration
	fetched, used := 0, 0
	pools := map[int][]scheme.Commitment{}
	res := &FROSTArith{K: k, N: n}
	start := time.Now()
	for res.Signatures < 3 || time.Since(start) < d {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rand.Read(msg[:8])
		commits := map[int]scheme.Commitment{}
		for i := 1; i <= k; i++ {
			if len(pools[i]) == 0 {
				req, err := sch.CommitRequest(pk, batch)
				if err != nil {
					return nil, err
				}
				req.Requester = "bench"
				t0 := cpuNow()
				rep, err := parts[i].Respond(ctx, rand.Reader, req)
				t1 := cpuNow()
				if err != nil {
					return nil, err
				}
				cs, _, err := sch.ParseCommitments(pk, i, rep)
				t2 := cpuNow()
				if err != nil {
					return nil, err
				}
				commitNode += t1 - t0
				commitClient += t2 - t1
				fetched += len(cs)
				pools[i] = cs
			}
			commits[i] = pools[i][0]
			pools[i] = pools[i][1:]
			used++
		}
		t0 := cpuNow()
		co, err := sch.NewSession(pk, scheme.EDDSA, msg, commits)
		client += cpuNow() - t0
		if err != nil {
			return nil, err
		}
		for i := 1; i <= k; i++ {
			req, err := co.Request(i)
			if err != nil {
				return nil, err
			}
			req.Requester = "bench"
			t0 := cpuNow()
			rep, err := parts[i].Respond(ctx, nil, req)
			t1 := cpuNow()
			if err != nil {
				return nil, err
			}
			err = co.Accept(i, rep)
			client += cpuNow() - t1
			node += t1 - t0
			if err != nil {
				return nil, err
			}
		}
		t0 = cpuNow()
		_, err = co.Finish()
		client += cpuNow() - t0
		if err != nil {
			return nil, err
		}
		res.Signatures++
	}
	per := func(x time.Duration) float64 {
		return float64(x) / float64(time.Millisecond) / float64(res.Signatures)
	}
	node += commitNode * time.Duration(used) / time.Duration(fetched)
	client += commitClient * time.Duration(used) / time.Duration(fetched)
	res.NodeMS, res.ClientMS = per(node), per(client)
	res.TotalMS = res.NodeMS + res.ClientMS
	return res, nil
}

func cpuNow() time.Duration {
	c, _ := threadCPU()
	return c
}

// frostKey deals a k-of-n FROST key in process (a random polynomial; the cluster's keys come
// from the nodes' DKG, whose shares have the same form) and makes each participant.
func frostKey(k, n int) (*frost.PublicKey, map[int]*frost.Participant, error) {
	coef := make([]*edwards25519.Scalar, k)
	for i := range coef {
		var b [64]byte
		rand.Read(b[:])
		s, err := edwards25519.NewScalar().SetUniformBytes(b[:])
		if err != nil {
			return nil, nil, err
		}
		coef[i] = s
	}
	eval := func(x int) *edwards25519.Scalar {
		var xb [32]byte
		xb[0] = byte(x)
		X, _ := edwards25519.NewScalar().SetCanonicalBytes(xb[:])
		acc := edwards25519.NewScalar()
		for i := k - 1; i >= 0; i-- {
			acc.Multiply(acc, X)
			acc.Add(acc, coef[i])
		}
		return acc
	}
	group := new(edwards25519.Point).ScalarBaseMult(coef[0]).Bytes()
	var ys [][]byte
	secrets := map[int][]byte{}
	for i := 1; i <= n; i++ {
		s := eval(i)
		secrets[i] = s.Bytes()
		ys = append(ys, new(edwards25519.Point).ScalarBaseMult(s).Bytes())
	}
	pk, err := frost.NewPublicKey(k, group, ys)
	if err != nil {
		return nil, nil, err
	}
	parts := map[int]*frost.Participant{}
	for i := 1; i <= k; i++ {
		sh, err := frost.NewSecretShare(i, secrets[i])
		if err != nil {
			return nil, nil, err
		}
		if parts[i], err = frost.NewParticipant(pk, sh, frost.Options{MaxOutstanding: 1 << 16}); err != nil {
			return nil, nil, err
		}
	}
	return pk, parts, nil
}

// Ed25519VerifyMS is the CPU time of one crypto/ed25519.Verify (ms) over about d, on a locked
// thread: what the harness spends verifying each threshold signature.
func Ed25519VerifyMS(d time.Duration) float64 {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return 0
	}
	msg := make([]byte, 150)
	sig := ed25519.Sign(priv, msg)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c0, start, n := cpuNow(), time.Now(), 0
	for ; n < 10 || time.Since(start) < d; n++ {
		ed25519.Verify(pub, msg, sig)
	}
	return float64(cpuNow()-c0) / float64(time.Millisecond) / float64(n)
}
