package tchsmpb

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// protocVersionLine matches the header line naming the protoc version, which may differ between
// machines without the generated code differing.
var protocVersionLine = regexp.MustCompile(`(?m)^// \tprotoc +v?[0-9][^\n]*\n`)

// TestGeneratedCodeIsCurrent regenerates tchsm.pb.go into a temporary directory and fails when
// the committed file differs: edit tchsm.proto, then run `go generate ./proto`.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		t.Fatalf("protoc is not installed (apt-get install protobuf-compiler): cannot check that tchsm.pb.go matches tchsm.proto: %v", err)
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("the go command is not on PATH: %v", err)
	}
	out := t.TempDir()
	cmd := exec.Command("sh", "gen.sh", out)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("gen.sh failed: %v\n%s", err, stderr.String())
	}
	fresh, err := os.ReadFile(filepath.Join(out, "tchsm.pb.go"))
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile("tchsm.pb.go")
	if err != nil {
		t.Fatal(err)
	}
	if !protocVersionLine.Match(committed) {
		t.Fatalf("tchsm.pb.go has no protoc version line in its header; the pattern %q needs updating", protocVersionLine)
	}
	fresh = protocVersionLine.ReplaceAll(fresh, nil)
	committed = protocVersionLine.ReplaceAll(committed, nil)
	if !bytes.Equal(fresh, committed) {
		t.Fatalf("tchsm.pb.go is stale or hand-edited: it differs from what tchsm.proto generates; run `go generate ./proto` and commit the result")
	}
}
