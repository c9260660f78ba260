package dealer

import (
	"context"
	"crypto/rand"
	"log/slog"
	"math/big"
	"slices"
	"sync"
	"time"

	"github.com/tchsm/tchsm/scheme/shoup"
	"github.com/tchsm/tchsm/scheme/shoup/keygen"
)

// primePool keeps safe primes ready for the key sizes it serves. One background goroutine
// generates them one at a time (each search itself uses every core) whenever a size has fewer
// than want; take hands them out.
type primePool struct {
	log    *slog.Logger
	want   int
	sizes  []int // key sizes in bits
	mu     sync.Mutex
	primes map[int][]*big.Int // key size -> primes of half that size
	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

func newPrimePool(sizes []int, want int, log *slog.Logger) *primePool {
	p := &primePool{log: log, want: want, primes: map[int][]*big.Int{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
	for _, b := range sizes {
		if b >= shoup.MinBits && b <= shoup.MaxBits && b%2 == 0 && !slices.Contains(p.sizes, b) {
			p.sizes = append(p.sizes, b)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	if want <= 0 || len(p.sizes) == 0 {
		close(p.done)
		return p
	}
	go p.fill(ctx)
	return p
}

func (p *primePool) fill(ctx context.Context) {
	defer close(p.done)
	for {
		bits := 0
		p.mu.Lock()
		for _, b := range p.sizes {
			if len(p.primes[b]) < p.want {
				bits = b
				break
			}
		}
		p.mu.Unlock()
		if bits == 0 {
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
				continue
			}
		}
		t0 := time.Now()
		q, err := keygen.GenerateSafePrime(ctx, rand.Reader, bits/2, nil)
		if err != nil {
			if ctx.Err() == nil {
				p.log.Error("prime pool: generation failed", "bits", bits/2, "err", err)
			}
			return
		}
		p.mu.Lock()
		p.primes[bits] = append(p.primes[bits], q)
		n := len(p.primes[bits])
		p.mu.Unlock()
		p.log.Debug("prime pool: safe prime ready", "key_bits", bits, "ready", n, "took", time.Since(t0).Round(time.Millisecond))
	}
}

// take returns one pooled prime for a key of bits bits.
func (p *primePool) take(bits int) (*big.Int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.primes[bits]
	if len(l) == 0 {
		return nil, false
	}
	q := l[len(l)-1]
	p.primes[bits] = l[:len(l)-1]
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return q, true
}

func (p *primePool) size(bits int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.primes[bits])
}

// close stops the generator and wipes the pooled primes.
func (p *primePool) close() {
	p.cancel()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.primes {
		for _, q := range l {
			wipeInt(q)
		}
	}
	p.primes = map[int][]*big.Int{}
}
