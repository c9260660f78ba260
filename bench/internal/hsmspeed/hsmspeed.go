// Package hsmspeed runs OpenDNSSEC's own HSM speed test, ods-hsmspeed (Debian package
// libhsm-bin), against a PKCS#11 token: it writes a minimal conf.xml with one <Repository> in a
// private temp dir, runs the tool and parses its "N sig/s" line. ods-hsmspeed generates a
// temporary RSA key through libhsm, signs RRsets with RSA/SHA-1 from T threads and deletes the
// key, so its figure includes libhsm's overhead (the path ods-signerd takes).
package hsmspeed

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/tchsm/tchsm/bench/internal/target"
)

// Sentinel errors.
var (
	ErrNotInstalled = errors.New("hsmspeed: ods-hsmspeed not installed (apt-get install libhsm-bin)")
	ErrNoResult     = errors.New("hsmspeed: no sig/s figure in ods-hsmspeed output")
)

// Result is one ods-hsmspeed run.
type Result struct {
	Threads    int     `json:"threads"`
	Iterations int     `json:"iterations_per_thread"`
	SigPerSec  float64 `json:"sig_per_s"`
}

var resultRE = regexp.MustCompile(`([0-9]+(?:\.[0-9]+)?) sig/s`)

// Parse extracts the sig/s figure from ods-hsmspeed's standard output, e.g.
// "2 threads, 300 signatures per thread, 3832.13 sig/s (RSA 1024 bits)".
func Parse(out string) (float64, error) {
	m := resultRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("%w: %q", ErrNoResult, strings.TrimSpace(out))
	}
	return strconv.ParseFloat(m[1], 64)
}

// Available reports whether ods-hsmspeed is on PATH.
func Available() bool {
	_, err := exec.LookPath("ods-hsmspeed")
	return err == nil
}

// ConfXML returns a minimal OpenDNSSEC conf.xml naming repo as repository name.
func ConfXML(name string, repo target.Repo) ([]byte, error) {
	esc := func(s string) string {
		var b bytes.Buffer
		_ = xml.EscapeText(&b, []byte(s))
		return b.String()
	}
	if name == "" || repo.Module == "" || repo.TokenLabel == "" {
		return nil, fmt.Errorf("hsmspeed: repository needs a name, a module and a token label")
	}
	return []byte(fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<Configuration>
	<RepositoryList>
		<Repository name="%s">
			<Module>%s</Module>
			<TokenLabel>%s</TokenLabel>
			<PIN>%s</PIN>
			<SkipPublicKey/>
		</Repository>
	</RepositoryList>
</Configuration>
`, esc(name), esc(repo.Module), esc(repo.TokenLabel), esc(repo.PIN))), nil
}

// Run runs `ods-hsmspeed -c conf.xml -r bench -s bits -i iterations -t threads` against repo.
// The conf.xml (it holds the PIN, as OpenDNSSEC's does) lives in a 0700 temp dir under tmpRoot
// and is removed before Run returns.
func Run(ctx context.Context, repo target.Repo, bits, threads, iterations int, tmpRoot string) (Result, error) {
	res := Result{Threads: threads, Iterations: iterations}
	bin, err := exec.LookPath("ods-hsmspeed")
	if err != nil {
		return res, ErrNotInstalled
	}
	if threads < 1 || iterations < 1 {
		return res, fmt.Errorf("hsmspeed: threads and iterations must be positive")
	}
	dir, err := os.MkdirTemp(tmpRoot, "tchsm-bench-ods-")
	if err != nil {
		return res, fmt.Errorf("hsmspeed: %w", err)
	}
	defer os.RemoveAll(dir)
	conf, err := ConfXML("bench", repo)
	if err != nil {
		return res, err
	}
	path := filepath.Join(dir, "conf.xml")
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		return res, fmt.Errorf("hsmspeed: %w", err)
	}
	cmd := exec.CommandContext(ctx, bin, "-c", path, "-r", "bench", "-s", strconv.Itoa(bits),
		"-i", strconv.Itoa(iterations), "-t", strconv.Itoa(threads))
	cmd.Env = append(os.Environ(), repo.Env...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if repo.PIN != "" {
			msg = strings.ReplaceAll(msg, repo.PIN, "<pin>")
		}
		return res, fmt.Errorf("hsmspeed: ods-hsmspeed -t %d: %w: %s", threads, err, msg)
	}
	res.SigPerSec, err = Parse(stdout.String())
	return res, err
}
