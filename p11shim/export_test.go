package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/tchsm/tchsm/client"
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
		token.ErrKeySizeRange, token.ErrMechanismInvalid, token.ErrMechanismParamInvalid,
		token.ErrOperationActive, token.ErrOperationNotInitialized, token.ErrDataLenRange,
		token.ErrBufferTooSmall, token.ErrSignatureInvalid, token.ErrSignatureLenRange,
		token.ErrAttributeTypeInvalid, token.ErrAttributeSensitive, token.ErrAttributeValueInvalid,
		token.ErrTemplateIncomplete, token.ErrTemplateInconsistent, token.ErrActionProhibited,
		token.ErrDeviceError, token.ErrFunctionNotSupported, token.ErrRandomSeedNotSupported, token.ErrClosed,
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
	if _, err := active(); !errors.Is(err, errNotInitialized) {
		t.Fatal(err)
	}
	if err := finalize(); !errors.Is(err, errNotInitialized) {
		t.Fatal(err)
	}
}
