//go:build integration

package harness

// A real tchsm run: nodes and dealer as processes on RabbitMQ (internal/testcluster), the
// module built from ./p11shim and loaded through PKCS#11 like any signer, ods-hsmspeed too.
//
//	go test -tags integration ./bench/internal/harness -run TestTchsmCluster -v

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tchsm/tchsm/bench/internal/progress"
	"github.com/tchsm/tchsm/internal/testcluster"
)

func TestTchsmCluster(t *testing.T) {
	so := filepath.Join(t.TempDir(), "libtchsm.so")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", so, "github.com/tchsm/tchsm/p11shim")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build libtchsm.so: %v\n%s", err, out)
	}
	c := testcluster.Start(t, testcluster.Options{K: 2, N: 3, TokenLabel: "tchsm-bench", PIN: "1234"})
	o, err := Parse([]string{"-quick", "-bits", "1024", "-k", "2", "-n", "3", "-targets", "tchsm",
		"-tchsm-module", so, "-tchsm-config", c.ClientConfig, "-tchsm-label", "tchsm-bench", "-tchsm-pin", "1234",
		"-out", t.TempDir(), "-tmp", t.TempDir()}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	res, err := Run(context.Background(), o, progress.NewWriter(&log, false))
	t.Logf("\n%s", log.String())
	if err != nil {
		c.DumpLogs()
		t.Fatal(err)
	}
	tr := res.Targets[0]
	if tr.Sweep == nil || tr.BestSigPerSec <= 0 || res.Invalid != 0 {
		t.Fatalf("tchsm: %+v", tr)
	}
	if res.Limit == nil || res.Limit.RatioToLimit <= 0 {
		t.Errorf("no ratio to the threshold limit: %+v", res.Limit)
	}
	if tr.HSMSpeedError != "" || len(tr.HSMSpeed) == 0 {
		t.Errorf("ods-hsmspeed against tchsm: %q", tr.HSMSpeedError)
	}
	t.Logf("tchsm RSA-1024 2-of-3: best %.0f sig/s at c=%d, limit %.0f (%.0f%%)", tr.BestSigPerSec, tr.BestConcurrency,
		res.Limit.Limit, 100*res.Limit.RatioToLimit)
}
