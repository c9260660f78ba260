package target

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// SoftHSMModules are the usual places of the SoftHSM2 PKCS#11 module (Debian first).
var SoftHSMModules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// FindSoftHSM returns the first SoftHSM2 module that exists, or "".
func FindSoftHSM() string {
	for _, p := range SoftHSMModules {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// SoftHSM is a SoftHSM2 token created by the harness in a temp directory (own SOFTHSM2_CONF and
// token dir, `softhsm2-util --init-token --free`), benchmarked through PKCS#11 and removed at
// Close.
type SoftHSM struct {
	*PKCS11
	dir     string
	conf    string
	label   string
	pin     string
	module  string
	version string
}

// OpenSoftHSM creates the token and generates an RSA key of the given size in it through PKCS#11.
func OpenSoftHSM(ctx context.Context, module string, bits int, tmpRoot string) (*SoftHSM, error) {
	return OpenSoftHSMKey(ctx, module, bits, false, tmpRoot)
}

// OpenSoftHSMKey is OpenSoftHSM with an Ed25519 key instead of RSA when ed is set.
func OpenSoftHSMKey(ctx context.Context, module string, bits int, ed bool, tmpRoot string) (s *SoftHSM, err error) {
	if module == "" {
		module = FindSoftHSM()
	}
	if module == "" {
		return nil, fmt.Errorf("%w: softhsm: libsofthsm2.so not found (apt-get install softhsm2)", ErrBadConfig)
	}
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		return nil, fmt.Errorf("%w: softhsm: softhsm2-util: %w", ErrBadConfig, err)
	}
	dir, err := os.MkdirTemp(tmpRoot, "tchsm-bench-softhsm-")
	if err != nil {
		return nil, fmt.Errorf("target: softhsm: %w", err)
	}
	s = &SoftHSM{dir: dir, module: module, label: "tchsm-bench"}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	var pinb [8]byte
	if _, err := rand.Read(pinb[:]); err != nil {
		return s, fmt.Errorf("target: softhsm: %w", err)
	}
	s.pin = hex.EncodeToString(pinb[:])
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		return s, fmt.Errorf("target: softhsm: %w", err)
	}
	s.conf = filepath.Join(dir, "softhsm2.conf")
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		return s, fmt.Errorf("target: softhsm: %w", err)
	}
	env := append(os.Environ(), "SOFTHSM2_CONF="+s.conf)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, util, "--init-token", "--free", "--label", s.label, "--pin", s.pin, "--so-pin", s.pin)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return s, fmt.Errorf("target: softhsm: softhsm2-util --init-token: %w: %s", err, strings.TrimSpace(redact(string(out), s.pin)))
	}
	vcmd := exec.CommandContext(cctx, util, "--version")
	vcmd.Env = env
	if out, err := vcmd.Output(); err == nil {
		s.version = strings.TrimSpace(string(out))
	}
	p, err := OpenPKCS11(PKCS11Config{
		Name:       "softhsm",
		Module:     module,
		TokenLabel: s.label,
		PIN:        s.pin,
		Bits:       bits,
		Ed25519:    ed,
		Env:        map[string]string{"SOFTHSM2_CONF": s.conf},
	})
	if err != nil {
		return s, err
	}
	s.PKCS11 = p
	return s, nil
}

func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "<pin>")
}

// Describe implements Target.
func (s *SoftHSM) Describe() string {
	d := s.PKCS11.Describe()
	if s.version != "" {
		d = "SoftHSM " + s.version + ", " + d
	}
	return d
}

// Repo describes the token for tools that open it themselves (ods-hsmspeed). The PIN is a
// random per-run PIN of a throw-away token.
func (s *SoftHSM) Repo() Repo {
	return Repo{Module: s.module, TokenLabel: s.label, PIN: s.pin, Env: []string{"SOFTHSM2_CONF=" + s.conf}}
}

// Close finalizes the module and removes the token directory.
func (s *SoftHSM) Close() error {
	var errs []error
	if s.PKCS11 != nil {
		errs = append(errs, s.PKCS11.Close())
	}
	if s.dir != "" {
		errs = append(errs, os.RemoveAll(s.dir))
		s.dir = ""
	}
	return errors.Join(errs...)
}

// Repo is a PKCS#11 token as an OpenDNSSEC <Repository>.
type Repo struct {
	Module     string
	TokenLabel string
	PIN        string
	Env        []string // extra environment for processes that open the module
}

// Repo describes the token of a generic PKCS#11 target.
func (t *PKCS11) Repo() Repo {
	var env []string
	for k, v := range t.cfg.Env {
		env = append(env, k+"="+v)
	}
	return Repo{Module: t.cfg.Module, TokenLabel: t.cfg.TokenLabel, PIN: t.cfg.PIN, Env: env}
}
