package runner

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"os"
	"testing"
	"time"

	"github.com/tchsm/tchsm/bench/internal/progress"
	"github.com/tchsm/tchsm/bench/internal/target"
)

func quickConfig(t *testing.T) Config {
	var buf bytes.Buffer
	t.Cleanup(func() {
		if testing.Verbose() {
			t.Log("\n" + buf.String())
		}
	})
	return Config{MaxConcurrency: 2, Duration: 150 * time.Millisecond, Warmup: 50 * time.Millisecond, Reps: 2,
		Bar: progress.NewWriter(&buf, false)}
}

func checkSweep(t *testing.T, sw *Sweep) {
	t.Helper()
	if len(sw.Steps) != 2 {
		t.Fatalf("got %d steps, want 2 (concurrency 1, 2)", len(sw.Steps))
	}
	for _, st := range sw.Steps {
		if st.Invalid != 0 {
			t.Errorf("c=%d: %d signatures did not verify", st.Concurrency, st.Invalid)
		}
		if st.Errors != 0 {
			t.Errorf("c=%d: %d errors: %s", st.Concurrency, st.Errors, st.FirstError)
		}
		if st.SigPerSec <= 0 || st.Latency.N == 0 || len(st.Reps) != 2 {
			t.Errorf("c=%d: empty step %+v", st.Concurrency, st)
		}
		if !(st.Latency.Min <= st.Latency.P50 && st.Latency.P50 <= st.Latency.P95 &&
			st.Latency.P95 <= st.Latency.P99 && st.Latency.P99 <= st.Latency.Max) {
			t.Errorf("c=%d: percentiles out of order: %+v", st.Concurrency, st.Latency)
		}
	}
	if sw.BestStep() == nil {
		t.Error("no best step")
	}
}

func TestGoRSAQuick(t *testing.T) {
	g, err := target.NewGoRSA(1024)
	if err != nil {
		t.Fatal(err)
	}
	sw, err := Run(context.Background(), g, quickConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	checkSweep(t, sw)
}

func openSoftHSM(t *testing.T) *target.SoftHSM {
	t.Helper()
	if target.FindSoftHSM() == "" {
		t.Skip("SoftHSM2 not installed (apt-get install softhsm2)")
	}
	s, err := target.OpenSoftHSM(context.Background(), "", 1024, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// TestSoftHSMQuick is a real run through PKCS#11 against a SoftHSM2 token the harness makes;
// it fails if any SoftHSM2 signature does not verify.
func TestSoftHSMQuick(t *testing.T) {
	s := openSoftHSM(t)
	if got := s.PublicKey().(*rsa.PublicKey).N.BitLen(); got != 1024 {
		t.Fatalf("key is %d bits, want 1024", got)
	}
	sw, err := Run(context.Background(), s, quickConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	checkSweep(t, sw)
}

// TestWrongKeyIsCaught checks that verification really happens: signatures checked against
// another key must all count as invalid and the step must fail.
func TestWrongKeyIsCaught(t *testing.T) {
	s := openSoftHSM(t)
	other, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	v, err := target.NewVerifier(&other.PublicKey, 8)
	if err != nil {
		t.Fatal(err)
	}
	cfg := quickConfig(t)
	cfg.MaxConcurrency, cfg.Reps, cfg.Duration = 1, 1, 50*time.Millisecond
	sw, err := RunWith(context.Background(), s, v, cfg)
	if err == nil {
		t.Fatalf("sweep with the wrong key succeeded: %+v", sw)
	}
	st, _ := RunStep(context.Background(), s, v, 1, cfg)
	if st.Invalid == 0 {
		t.Error("no invalid signatures counted against the wrong key")
	}
}

func TestCountMode(t *testing.T) {
	g, err := target.NewGoRSA(1024)
	if err != nil {
		t.Fatal(err)
	}
	v, err := target.NewVerifier(g.PublicKey(), 16)
	if err != nil {
		t.Fatal(err)
	}
	st, err := RunStep(context.Background(), g, v, 3, Config{Count: 50, Reps: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range st.Reps {
		if r.Signatures != 50 {
			t.Errorf("count mode signed %d, want 50", r.Signatures)
		}
	}
}

func TestMain(m *testing.M) { os.Exit(m.Run()) }

// TestEd25519Targets: SoftHSM2's Ed25519 through PKCS#11 (CKM_EC_EDWARDS_KEY_PAIR_GEN, the
// public key from CKA_EC_POINT, CKM_EDDSA) and crypto/ed25519 sign and verify; signatures checked
// against another Ed25519 key all count as invalid.
func TestEd25519Targets(t *testing.T) {
	if target.FindSoftHSM() == "" {
		t.Skip("SoftHSM2 not installed")
	}
	s, err := target.OpenSoftHSMKey(context.Background(), "", 0, true, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.KeyGenTime() <= 0 {
		t.Error("no key generation time")
	}
	g, err := target.NewGoEd25519()
	if err != nil {
		t.Fatal(err)
	}
	cfg := quickConfig(t)
	cfg.MaxConcurrency, cfg.Reps, cfg.Duration = 2, 1, 50*time.Millisecond
	for _, tg := range []target.Target{s, g} {
		sw, err := Run(context.Background(), tg, cfg)
		if err != nil || sw.Invalid != 0 || sw.BestStep() == nil || sw.BestStep().SigPerSec <= 0 {
			t.Fatalf("%s: %v %+v", tg.Name(), err, sw)
		}
	}
	other, err := target.NewGoEd25519()
	if err != nil {
		t.Fatal(err)
	}
	v, err := target.NewVerifier(other.PublicKey(), 8)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := RunStep(context.Background(), s, v, 1, cfg)
	if st.Invalid == 0 {
		t.Error("no invalid signatures counted against the wrong Ed25519 key")
	}
}
