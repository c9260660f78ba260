package testcluster

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	releaseMu   sync.Mutex
	releaseBins = map[string]string{}
)

// RepoRoot is the root of the source tree this package was built from.
func RepoRoot() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(self), "..", ".."))
}

// ReleaseBinary returns the tchsm binary of an older release, built from commit (a full hash;
// tag, when it names the same commit, is only its name in messages and in `tchsm version`).
// The source comes from this checkout's git history (`git archive`, so no worktree is touched)
// and is built with -trimpath, so that the Go build cache serves its packages the next time;
// the binary itself is kept under the build cache (GOCACHE/tchsm-releases/COMMIT/tchsm), and a
// second run does not build at all. The test is skipped, saying why, when git or the commit is
// not there (a tarball, a shallow clone: `git fetch --unshallow`).
func ReleaseBinary(t testing.TB, commit, tag string) string {
	t.Helper()
	releaseMu.Lock()
	defer releaseMu.Unlock()
	if p, ok := releaseBins[commit]; ok {
		return p
	}
	root := RepoRoot()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skipf("release %s (%s): git is not installed, so the old binary cannot be built", tag, commit)
	}
	if out, err := exec.Command("git", "-C", root, "cat-file", "-e", commit+"^{commit}").CombinedOutput(); err != nil {
		t.Skipf("release %s (%s) is not in this checkout's git history (%v %s): fetch it (git fetch --unshallow, or git fetch origin %s) to run the mixed-version test",
			tag, commit, err, bytes.TrimSpace(out), commit)
	}
	if tag != "" {
		// A tag that names another commit is a mistake worth stopping for: the test would not
		// test the release it says it tests.
		if out, err := exec.Command("git", "-C", root, "rev-parse", "--verify", "--quiet", tag+"^{commit}").Output(); err == nil {
			if got := strings.TrimSpace(string(out)); got != commit {
				t.Fatalf("tag %s names %s, not %s (internal/protocol.PreviousCommit)", tag, got, commit)
			}
		}
	}
	gocache, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil || len(bytes.TrimSpace(gocache)) == 0 {
		t.Fatalf("go env GOCACHE: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(gocache)), "tchsm-releases", commit)
	bin := filepath.Join(dir, "tchsm")
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o100 != 0 {
		releaseBins[commit] = bin
		return bin
	}
	src, err := os.MkdirTemp("", "tchsm-release-src-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(src)
	archive := exec.Command("git", "-C", root, "archive", "--format=tar", commit)
	untar := exec.Command("tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	untar.Stdin = pipe
	var aerr, uerr bytes.Buffer
	archive.Stderr, untar.Stderr = &aerr, &uerr
	if err := untar.Start(); err != nil {
		t.Fatal(err)
	}
	if err := archive.Run(); err != nil {
		t.Fatalf("git archive %s: %v\n%s", commit, err, aerr.String())
	}
	if err := untar.Wait(); err != nil {
		t.Fatalf("untar %s: %v\n%s", commit, err, uerr.String())
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, fmt.Sprintf("tchsm.%d.tmp", os.Getpid()))
	name := tag
	if name == "" {
		name = commit[:7]
	}
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.version="+name, "-o", tmp, "./cmd/tchsm")
	build.Dir = src
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	if out, err := build.CombinedOutput(); err != nil {
		os.Remove(tmp)
		t.Fatalf("building release %s (%s): %v\n%s", name, commit, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	releaseBins[commit] = bin
	return bin
}
