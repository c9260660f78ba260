package hsmspeed

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tchsm/tchsm/bench/internal/target"
)

func TestParse(t *testing.T) {
	got, err := Parse("2 threads, 300 signatures per thread, 3832.13 sig/s (RSA 1024 bits)\n")
	if err != nil || got != 3832.13 {
		t.Errorf("Parse = %v, %v", got, err)
	}
	if _, err := Parse("Could not generate a key pair"); !errors.Is(err, ErrNoResult) {
		t.Errorf("Parse(garbage) err = %v", err)
	}
}

func TestConfXMLEscapes(t *testing.T) {
	b, err := ConfXML("bench", target.Repo{Module: "/m.so", TokenLabel: "a<b&c", PIN: "1234"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "<TokenLabel>a&lt;b&amp;c</TokenLabel>") {
		t.Errorf("label not escaped:\n%s", b)
	}
	if _, err := ConfXML("bench", target.Repo{}); err == nil {
		t.Error("empty repo accepted")
	}
}

func TestSoftHSM(t *testing.T) {
	if !Available() || target.FindSoftHSM() == "" {
		t.Skip("ods-hsmspeed or SoftHSM2 missing")
	}
	s, err := target.OpenSoftHSM(context.Background(), "", 1024, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := Run(context.Background(), s.Repo(), 1024, 1, 50, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if r.SigPerSec <= 0 {
		t.Errorf("no rate: %+v", r)
	}
	t.Logf("ods-hsmspeed SoftHSM2 RSA-1024, 1 thread: %.0f sig/s", r.SigPerSec)
	bad := s.Repo()
	bad.TokenLabel = "no-such-token"
	if _, err := Run(context.Background(), bad, 1024, 1, 5, t.TempDir()); err == nil {
		t.Error("run against a missing token succeeded")
	}
}
