package target

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestVerifier(t *testing.T) {
	priv, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(&priv.PublicKey, 4)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := rsa.SignPKCS1v15(nil, priv, crypto.SHA256, v.Digest(1))
	if err != nil {
		t.Fatal(err)
	}
	if !v.Check(1, sig) || !v.Check(5, sig) { // 5 mod 4 == 1; second check hits the cache
		t.Error("valid signature rejected")
	}
	if v.Check(2, sig) {
		t.Error("signature of another digest accepted")
	}
	bad := append([]byte(nil), sig...)
	bad[10] ^= 1
	if v.Check(1, bad) {
		t.Error("tampered signature accepted after a valid one was cached")
	}
	if v.Check(1, sig[:len(sig)-1]) || v.Check(1, nil) {
		t.Error("short signature accepted")
	}
	if _, err := NewVerifier(nil, 4); !errors.Is(err, ErrBadConfig) {
		t.Errorf("nil key: %v", err)
	}
}

func TestDigestInfo(t *testing.T) {
	di, err := DigestInfo(make([]byte, 32))
	if err != nil || len(di) != 51 || di[0] != 0x30 {
		t.Errorf("DigestInfo = %x, %v", di, err)
	}
	if _, err := DigestInfo(make([]byte, 20)); !errors.Is(err, ErrBadConfig) {
		t.Errorf("short digest: %v", err)
	}
}

func TestGoRSA(t *testing.T) {
	if _, err := NewGoRSA(1000); !errors.Is(err, ErrBadConfig) {
		t.Errorf("1000 bits: %v", err)
	}
	g, err := NewGoRSA(1024)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := g.NewWorker()
	v, _ := NewVerifier(g.PublicKey(), 1)
	sig, err := w.Sign(v.Digest(0))
	if err != nil || !v.Check(0, sig) {
		t.Errorf("gorsa signature: %v", err)
	}
}

func TestOpenPKCS11Errors(t *testing.T) {
	if _, err := OpenPKCS11(PKCS11Config{Name: "x", Module: "/nonexistent.so", TokenLabel: "t", Bits: 2048}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("missing module: %v", err)
	}
	if _, err := OpenPKCS11(PKCS11Config{Name: "x", Module: "/bin/sh", TokenLabel: "t", Bits: 1234}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("bad bits: %v", err)
	}
	mod := FindSoftHSM()
	if mod == "" {
		t.Skip("SoftHSM2 not installed")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "softhsm2.conf")
	os.Mkdir(filepath.Join(dir, "tokens"), 0o700)
	os.WriteFile(conf, []byte("directories.tokendir = "+filepath.Join(dir, "tokens")+"\nobjectstore.backend = file\n"), 0o600)
	_, err := OpenPKCS11(PKCS11Config{Name: "x", Module: mod, TokenLabel: "absent", PIN: "1", Bits: 1024,
		Env: map[string]string{"SOFTHSM2_CONF": conf}})
	if !errors.Is(err, ErrTokenMissing) {
		t.Errorf("absent token: %v", err)
	}
	if v, ok := os.LookupEnv("SOFTHSM2_CONF"); ok && v == conf {
		t.Error("environment not restored after a failed open")
	}
}
