package keygen

import (
	"context"
	"fmt"
	"github.com/tchsm/tchsm/scheme/shoup"
	"io"
	"math/big"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// sievePrimes are the odd primes below sieveBound, used to discard candidates q with q or 2q+1
// divisible by a small prime before any exponentiation.
const sieveBound = 1 << 18

// sieveWindow is the number of consecutive odd candidates sieved at once.
const sieveWindow = 1 << 16

var sievePrimes = func() []uint32 {
	composite := make([]bool, sieveBound)
	var ps []uint32
	for i := 3; i < sieveBound; i += 2 {
		if composite[i] {
			continue
		}
		ps = append(ps, uint32(i))
		for j := i * i; j < sieveBound; j += 2 * i {
			composite[j] = true
		}
	}
	return ps
}()

// lockedReader makes an io.Reader safe for the search's concurrent workers.
type lockedReader struct {
	mu sync.Mutex
	r  io.Reader
}

func (l *lockedReader) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return io.ReadFull(l.r, p)
}

// GenerateSafePrime returns a random safe prime p = 2q+1 of exactly bits bits whose two top bits
// are set (so the product of two of them has exactly 2·bits bits). It searches on
// runtime.GOMAXPROCS(0) goroutines; each sieves a window of consecutive candidates q against the
// odd primes below 2^18 for both q and 2q+1, then runs a base-2 Fermat test on q and p, and
// confirms the winner with Miller-Rabin and Baillie-PSW on both. progress, if not nil, is called
// from a single goroutine about every 200 ms and at the end with the number of candidates that
// reached an exponentiation. It returns ctx.Err() when ctx ends first.
func GenerateSafePrime(ctx context.Context, rand io.Reader, bits int, progress func(tested int)) (*big.Int, error) {
	if bits < 64 || bits > shoup.MaxBits {
		return nil, fmt.Errorf("%w: safe prime of %d bits", shoup.ErrInvalidParams, bits)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rnd := &lockedReader{r: rand}
	var tested atomic.Int64
	found := make(chan *big.Int, 1)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := searchSafePrime(ctx, rnd, bits, &tested)
			switch {
			case err == nil:
				select {
				case found <- p:
				default:
				}
				cancel()
			case ctx.Err() == nil:
				select {
				case errc <- err:
				default:
				}
				cancel()
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if progress != nil {
				progress(int(tested.Load()))
			}
		case <-done:
			if progress != nil {
				progress(int(tested.Load()))
			}
			select {
			case p := <-found:
				return p, nil
			default:
			}
			select {
			case err := <-errc:
				return nil, err
			default:
			}
			return nil, context.Cause(ctx)
		}
	}
}

// searchSafePrime runs one worker of GenerateSafePrime until it finds a safe prime or ctx ends.
func searchSafePrime(ctx context.Context, rnd io.Reader, bits int, tested *atomic.Int64) (*big.Int, error) {
	qbits := bits - 1
	buf := make([]byte, (qbits+7)/8)
	residues := make([]uint32, len(sievePrimes))
	sieve := make([]bool, sieveWindow)
	one := big.NewInt(1)
	two := big.NewInt(2)
	q, p, t := new(big.Int), new(big.Int), new(big.Int)
	for ctx.Err() == nil {
		// Random odd q0 of qbits bits with its two top bits set.
		if _, err := io.ReadFull(rnd, buf); err != nil {
			return nil, fmt.Errorf("shoup: reading randomness: %w", err)
		}
		excess := uint(len(buf)*8 - qbits)
		buf[0] &= 0xff >> excess
		q0 := new(big.Int).SetBytes(buf)
		q0.SetBit(q0, qbits-1, 1)
		q0.SetBit(q0, qbits-2, 1)
		q0.SetBit(q0, 0, 1)
		words := q0.Bits()
		for i, r := range sievePrimes {
			residues[i] = modWord(words, r)
		}
		// Scan a few windows from this start before drawing a new one.
		for w := 0; w < 64 && ctx.Err() == nil; w++ {
			clear(sieve)
			for i, r := range sievePrimes {
				// Candidate j stands for q = q0 + 2j. Discard j where r | q or r | 2q+1, that is
				// q ≡ 0 or q ≡ (r-1)/2 (mod r).
				rr := uint64(r)
				inv2 := (rr + 1) / 2
				res := uint64(residues[i])
				for _, target := range [2]uint64{0, (rr - 1) / 2} {
					j := (target + rr - res) % rr * inv2 % rr
					for ; j < sieveWindow; j += rr {
						sieve[j] = true
					}
				}
				residues[i] = uint32((res + 2*sieveWindow) % rr)
			}
			for j := range sieveWindow {
				if sieve[j] {
					continue
				}
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				q.Add(q0, t.SetInt64(int64(2*j)))
				if q.BitLen() != qbits {
					break
				}
				tested.Add(1)
				// Fermat base 2 on q, then on p = 2q+1.
				t.Sub(q, one)
				if t.Exp(two, t, q).Cmp(one) != 0 {
					continue
				}
				p.Lsh(q, 1).Add(p, one)
				t.Sub(p, one)
				if t.Exp(two, t, p).Cmp(one) != 0 {
					continue
				}
				if q.ProbablyPrime(20) && p.ProbablyPrime(20) {
					return new(big.Int).Set(p), nil
				}
			}
			q0.Add(q0, t.SetInt64(2*sieveWindow))
			if q0.BitLen() != qbits {
				break
			}
		}
	}
	return nil, ctx.Err()
}

// modWord returns x mod r for the little-endian words of x.
func modWord(words []big.Word, r uint32) uint32 {
	var rem uint64
	for i := len(words) - 1; i >= 0; i-- {
		w := uint64(words[i])
		if bits.UintSize == 32 {
			rem = (rem<<32 | w) % uint64(r)
			continue
		}
		rem = bits.Rem64(rem, w, uint64(r))
	}
	return uint32(rem)
}
