package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/p11shim/token"
)

// TestErrorTable checks that every sentinel of the token maps to its own CKR_* value, also when
// wrapped the way the token wraps them.
func TestErrorTable(t *testing.T) {
	sentinels := []error{
		token.ErrArgumentsBad, token.ErrSlotIDInvalid, token.ErrSessionHandleInvalid, token.ErrSessionClosed,
		token.ErrSessionParallelNotSupported, token.ErrSessionReadOnly, token.ErrSessionCount,
		token.ErrUserNotLoggedIn, token.ErrUserAlreadyLoggedIn, token.ErrUserTypeInvalid,
		token.ErrUserPINNotInitialized, token.ErrPINIncorrect, token.ErrObjectHandleInvalid,
		token.ErrKeyHandleInvalid, token.ErrKeyTypeInconsistent, token.ErrKeyFunctionNotPermitted,
		token.ErrKeySizeRange, token.ErrCurveNotSupported, token.ErrMechanismInvalid, token.ErrMechanismParamInvalid,
		token.ErrOperationActive, token.ErrOperationNotInitialized, token.ErrDataLenRange,
		token.ErrBufferTooSmall, token.ErrSignatureInvalid, token.ErrSignatureLenRange,
		token.ErrAttributeTypeInvalid, token.ErrAttributeSensitive, token.ErrAttributeValueInvalid,
		token.ErrTemplateIncomplete, token.ErrTemplateInconsistent, token.ErrActionProhibited,
		token.ErrDeviceError, token.ErrDeviceMemory, token.ErrFunctionRejected, token.ErrFunctionNotSupported, token.ErrRandomSeedNotSupported, token.ErrClosed,
		token.ErrConfig, errNotInitialized, // ErrClosed and errNotInitialized share CKR_CRYPTOKI_NOT_INITIALIZED
		errAlreadyInitialized, errCantLock,
	}
	seen := map[uint64]error{}
	for _, e := range sentinels {
		rv := uint64(rvOf(fmt.Errorf("context: %w", e)))
		if rv == 0x5 { // CKR_GENERAL_ERROR
			t.Errorf("%v maps to CKR_GENERAL_ERROR", e)
		}
		if prev, dup := seen[rv]; dup && e != errNotInitialized {
			t.Errorf("%v and %v both map to %#x", prev, e, rv)
		}
		seen[rv] = e
	}
	if rv := uint64(rvOf(nil)); rv != 0 {
		t.Fatal(rv)
	}
	if rv := uint64(rvOf(errors.New("surprise"))); rv != 0x5 {
		t.Fatalf("unknown error -> %#x", rv)
	}
	// The token reports a vanished key as both; the key error wins.
	if rv := uint64(rvOf(fmt.Errorf("%w: %w", token.ErrKeyHandleInvalid, token.ErrObjectHandleInvalid))); rv != 0x60 {
		t.Fatalf("%#x", rv)
	}
	// A policy refusal is CKR_FUNCTION_REJECTED.
	if rv := uint64(rvOf(fmt.Errorf("%w: signing: %w", token.ErrFunctionRejected, client.ErrPolicyRefused))); rv != 0x200 {
		t.Fatalf("%#x", rv)
	}
	// A backend failure keeps its cause and maps to CKR_DEVICE_ERROR.
	if rv := uint64(rvOf(fmt.Errorf("%w: signing: %w", token.ErrDeviceError, client.ErrNotEnoughNodes))); rv != 0x30 {
		t.Fatalf("%#x", rv)
	}
}

func TestInitializeBadConfig(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.json")
	if err := os.WriteFile(p, []byte(`{"pkcs11": {"token_label": 5}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	err := initialize(p)
	if !errors.Is(err, token.ErrConfig) || uint64(rvOf(err)) != 0x6 { // CKR_FUNCTION_FAILED
		t.Fatalf("initialize = %v", err)
	}
	if err := initialize(filepath.Join(dir, "missing.json")); uint64(rvOf(err)) != 0x6 {
		t.Fatalf("initialize(missing) = %v", err)
	}
	// An error in the client part of the file is a configuration error too.
	if err := os.WriteFile(p, []byte(`{"manifest": "m", "identity": "i", "sign_timout": "1s"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := initialize(p); !errors.Is(err, token.ErrConfig) || uint64(rvOf(err)) != 0x6 {
		t.Fatalf("initialize(client part) = %v", err)
	}
	if _, err := active(); !errors.Is(err, errNotInitialized) {
		t.Fatal(err)
	}
	if err := finalize(); !errors.Is(err, errNotInitialized) {
		t.Fatal(err)
	}
}

// C_Initialize parses the client file once: the cluster client gets the same parsed file the
// token's settings and the module's log come from.
func TestInitializeLoadsOnce(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "client.json")
	if err := os.WriteFile(p, []byte(`{"manifest": "m.json", "identity": "id.json", "sign_timeout": "4s",
		"pkcs11": {"token_label": "ods", "log_file": "pkcs11.log", "log_level": "debug"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var got *config.Client
	orig := openBackend
	t.Cleanup(func() { openBackend = orig })
	openBackend = func(_ context.Context, cfg *config.Client, _ *slog.Logger) (client.Backend, error) {
		got = cfg
		return nil, errors.New("no cluster in this test")
	}
	if err := initialize(p); err == nil || !strings.Contains(err.Error(), "no cluster in this test") {
		t.Fatalf("initialize = %v", err)
	}
	if got == nil || got.Manifest != filepath.Join(dir, "m.json") || got.PKCS11 == nil || got.PKCS11.TokenLabel != "ods" {
		t.Fatalf("backend opened with %+v", got)
	}
	if s := got.TokenSettings(); time.Duration(s.SignTimeout) != 4*time.Second {
		t.Fatalf("token settings %+v", s)
	}
	b, err := os.ReadFile(filepath.Join(dir, "pkcs11.log"))
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatalf("log is not one JSON line: %q", b)
	}
	if rec["level"] != "ERROR" || rec["pid"] != float64(os.Getpid()) || !strings.Contains(fmt.Sprint(rec["err"]), "no cluster") {
		t.Fatalf("log %v", rec)
	}
	if _, err := active(); !errors.Is(err, errNotInitialized) {
		t.Fatal(err)
	}
}

// What the client sees (a liar excluded, a broker away) goes to the module's log unless the
// client part of the file has a log of its own.
func TestClientLogsIntoModuleLog(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	o := clientOptions(&config.Client{}, log)
	if o.Logger == nil {
		t.Fatal("no logger for a client without log_file: its warnings would be lost")
	}
	o.Logger.Warn("node returned an invalid signature share; excluded", "node", "node-2")
	if !strings.Contains(buf.String(), `"component":"client"`) || !strings.Contains(buf.String(), "node-2") {
		t.Fatalf("module log: %s", buf.String())
	}
	if o := clientOptions(&config.Client{LogFile: "/var/log/tchsm-client.log"}, log); o.Logger != nil {
		t.Fatal("a client with its own log_file must log there")
	}
}
