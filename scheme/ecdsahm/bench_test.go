package ecdsahm

import (
	"crypto/rand"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/tchsm/tchsm/scheme"
)

// BenchmarkPresign_5of5_t2 measures one presigning run of a batch among the 2t+1 = 5 members
// of a set, all in this process; ns/op is per presignature for the whole set, and the
// per-node figure (cpu-µs/node) is that divided by the set's size: every member does the same
// work.
func BenchmarkPresign_5of5_t2(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch%d", batch), func(b *testing.B) { benchPresign(b, 5, 2, batch) })
	}
}

func BenchmarkPresign_3of3_t1(b *testing.B) { benchPresign(b, 3, 1, 64) }

func benchPresign(b *testing.B, n, t, batch int) {
	c := newCluster(b, n, t)
	set := make([]int, 2*t+1)
	for i := range set {
		set[i] = i + 1
	}
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		if _, err := c.presign(b, set, batch, nil); err != nil {
			b.Fatal(err)
		}
	}
	cpu := cpuTime() - cpu0
	perPre := float64(b.Elapsed().Nanoseconds()) / float64(b.N*batch)
	b.ReportMetric(perPre/1e3, "wall-µs/presig(set)")
	// The process's CPU time (user + system, garbage collector included) per presignature and
	// member: what one node spends, as every member does the same work.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*batch*len(set))/1e3, "cpu-µs/presig/node")
}

// BenchmarkSignShare_t2 is one member's online work: Sign on a presignature (binding path).
func BenchmarkSignShare_t2(b *testing.B) {
	c := newCluster(b, 5, 2)
	set := []int{1, 2, 3, 4, 5}
	var pool []*Presignature
	d := digestOf("bench")
	b.ResetTimer()
	for range b.N {
		if len(pool) == 0 {
			b.StopTimer()
			pres, err := c.presign(b, set, MaxBatch, nil)
			if err != nil {
				b.Fatal(err)
			}
			pool = pres[1]
			b.StartTimer()
		}
		p := pool[0]
		pool = pool[1:]
		if _, err := p.Sign(c.request(p, d)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCombineVerify_5of5_t2 is the coordinator's work per signature: interpolate five
// shares and verify with crypto/ecdsa.
func BenchmarkCombineVerify_5of5_t2(b *testing.B) {
	c := newCluster(b, 5, 2)
	set := []int{1, 2, 3, 4, 5}
	pres, err := c.presign(b, set, 1, nil)
	if err != nil {
		b.Fatal(err)
	}
	d := digestOf("bench")
	pp := c.public(b, pres, 0)
	shares := map[int][]byte{}
	for i, ps := range pres {
		shares[i], _ = ps[0].Sign(c.request(ps[0], d))
	}
	b.ResetTimer()
	for range b.N {
		if _, err := Combine(c.pk, pp, d, shares); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEchoRelease_t2 is one member's work in the echo round: Prepare (seal 2t echoes)
// plus Release (open 2t, compare, share).
func BenchmarkEchoRelease_t2(b *testing.B) {
	c := newCluster(b, 5, 2)
	set := []int{1, 2, 3, 4, 5}
	d := digestOf("bench")
	var pres map[int][]*Presignature
	next := 0
	b.ResetTimer()
	for range b.N {
		if pres == nil || next == len(pres[1]) {
			b.StopTimer()
			var err error
			if pres, err = c.presign(b, set, 256, nil); err != nil {
				b.Fatal(err)
			}
			next = 0
			b.StartTimer()
		}
		var echoes []scheme.Message
		for _, i := range set {
			p := pres[i][next]
			if i == 1 {
				e, err := p.Prepare(c.chs[0], c.request(p, d))
				if err != nil {
					b.Fatal(err)
				}
				_ = e
				continue
			}
			b.StopTimer() // the others' Prepare is their own work, not member 1's
			e, err := p.Prepare(c.chs[i-1], c.request(p, d))
			if err != nil {
				b.Fatal(err)
			}
			echoes = append(echoes, e...)
			b.StartTimer()
		}
		if _, err := pres[1][next].Release(c.chs[0], echoes); err != nil {
			b.Fatal(err)
		}
		next++
	}
}

// BenchmarkKeyGen_5_t2 is a whole key generation among five, in one process.
func BenchmarkKeyGen_5_t2(b *testing.B) {
	for range b.N {
		newCluster(b, 5, 2)
	}
}

var _ = rand.Reader

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
