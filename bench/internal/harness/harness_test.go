package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tchsm/tchsm/bench/internal/progress"
	"github.com/tchsm/tchsm/bench/internal/report"
	"github.com/tchsm/tchsm/bench/internal/target"
)

func TestParse(t *testing.T) {
	var buf bytes.Buffer
	o, err := Parse([]string{"-quick", "-targets", "gorsa,softhsm,gorsa", "-bits", "1024", "-k", "2", "-n", "4"}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if o.Duration != 250*time.Millisecond || o.Reps != 2 || o.MaxConcurrency != 4 || len(o.Targets) != 2 {
		t.Errorf("quick defaults not applied: %+v", o)
	}
	if len(o.ScalingNs) != 5 || o.ScalingNs[0] != 2 || len(o.ScalingKs) != 3 {
		t.Errorf("scaling defaults: n %v k %v", o.ScalingNs, o.ScalingKs)
	}
	o, err = Parse([]string{"-quick", "-reps", "5"}, &buf)
	if err != nil || o.Reps != 5 {
		t.Errorf("-quick overrode an explicit -reps: %v %+v", err, o)
	}
	o, err = Parse([]string{"-from", "/x/y/results.json"}, &buf)
	if err != nil || o.Out != "/x/y" {
		t.Errorf("-from: out %q, %v", o.Out, err)
	}
	for _, bad := range [][]string{
		{"-bits", "1000"}, {"-k", "4", "-n", "3"}, {"-targets", "hsm9000"}, {"-reps", "0"},
		{"-hsmspeed-threads", "1,x"}, {"extra"}, {"-duration", "0s"},
	} {
		if _, err := Parse(bad, &buf); !errors.Is(err, ErrUsage) {
			t.Errorf("Parse(%q) err = %v, want ErrUsage", bad, err)
		}
	}
}

// TestQuickRun is a real end-to-end run of the harness against crypto/rsa and a SoftHSM2 token:
// it fails if a SoftHSM2 signature does not verify or the report files are missing.
func TestQuickRun(t *testing.T) {
	targets := "gorsa,softhsm,tchsm"
	if target.FindSoftHSM() == "" {
		t.Log("SoftHSM2 not installed: crypto/rsa only")
		targets = "gorsa,tchsm"
	}
	out := t.TempDir()
	tmp := t.TempDir()
	t.Setenv("TCHSM_MODULE", "")
	t.Setenv("TCHSM_CONFIG", "")
	o, err := Parse([]string{"-quick", "-bits", "1024", "-targets", targets, "-duration", "150ms", "-max-concurrency", "2",
		"-share-time", "100ms", "-out", out, "-tmp", tmp}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	res, err := Run(context.Background(), o, progress.NewWriter(&log, false))
	t.Logf("\n%s", log.String())
	if err != nil {
		t.Fatal(err)
	}
	files, err := res.Write(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 6 {
		t.Errorf("wrote %v, want results.json, machine.txt, results.md and 3 plots", files)
	}
	var back report.Results
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Invalid != 0 {
		t.Fatalf("%d invalid signatures", back.Invalid)
	}
	if back.Limit == nil || back.Limit.Limit <= 0 {
		t.Error("no threshold limit")
	}
	seen := map[string]bool{}
	for _, tr := range back.Targets {
		seen[tr.Name] = true
		switch tr.Name {
		case "tchsm":
			if tr.Skipped == "" {
				t.Error("tchsm not skipped without a module")
			}
		default:
			if tr.Sweep == nil || tr.BestSigPerSec <= 0 || tr.Sweep.Invalid != 0 || tr.Error != "" {
				t.Errorf("%s: bad result %+v", tr.Name, tr)
			}
		}
		if tr.Name == "softhsm" && tr.RatioToSoftHSM != 1 {
			t.Errorf("softhsm ratio to itself = %v", tr.RatioToSoftHSM)
		}
	}
	if !seen["gorsa"] {
		t.Error("gorsa missing")
	}
	left, _ := os.ReadDir(tmp)
	if len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
	for _, f := range files {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestParseEd25519(t *testing.T) {
	o, err := Parse([]string{"-alg", "ed25519"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.Targets, ",") != "softhsm,goed25519,tchsm" || !o.NoLimit || o.HSMSpeed || len(o.CompareSizes) != 0 {
		t.Fatalf("-alg ed25519: %+v", o)
	}
	for _, args := range [][]string{{"-alg", "ed25519", "-targets", "gorsa"}, {"-targets", "goed25519"}, {"-alg", "dsa"}} {
		if _, err := Parse(args, io.Discard); !errors.Is(err, ErrUsage) {
			t.Errorf("%v: %v", args, err)
		}
	}
}
