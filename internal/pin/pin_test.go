package pin

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"
)

func TestHashVerify(t *testing.T) {
	h, err := Hash("123456")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("unexpected hash format %q", h)
	}
	if strings.Contains(h, "123456") {
		t.Fatal("hash contains the PIN")
	}
	for _, tc := range []struct {
		pin  string
		want bool
	}{{"123456", true}, {"123457", false}, {"", false}, {"1234567", false}, {"12345", false}} {
		ok, err := Verify(h, tc.pin)
		if err != nil || ok != tc.want {
			t.Errorf("Verify(%q) = %v, %v; want %v", tc.pin, ok, err, tc.want)
		}
	}
	h2, err := Hash("123456")
	if err != nil {
		t.Fatal(err)
	}
	if h == h2 {
		t.Fatal("two hashes of the same PIN are equal: salt not random")
	}
}

func TestHashRejects(t *testing.T) {
	if _, err := Hash(""); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty: %v", err)
	}
	if _, err := Hash(strings.Repeat("x", MaxPINLen+1)); !errors.Is(err, ErrTooLong) {
		t.Errorf("long: %v", err)
	}
}

// TestKnownAnswer checks interoperability: a hash built here by hand from argon2.IDKey with
// other parameters verifies, as does one using a 32-byte salt.
func TestKnownAnswer(t *testing.T) {
	salt := []byte("0123456789abcdef0123456789abcdef")
	sum := argon2.IDKey([]byte("hunter2"), salt, 1, 64, 2, 16)
	h := "$argon2id$v=19$m=64,t=1,p=2$" + base64.RawStdEncoding.EncodeToString(salt) + "$" +
		base64.RawStdEncoding.EncodeToString(sum)
	ok, err := Verify(h, "hunter2")
	if err != nil || !ok {
		t.Fatalf("Verify = %v, %v", ok, err)
	}
	if ok, _ := Verify(h, "hunter3"); ok {
		t.Fatal("wrong PIN accepted")
	}
}

func TestMalformed(t *testing.T) {
	good, err := Hash("1234")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, "$")
	bad := []string{
		"",
		"1234",
		"$argon2i$v=19$m=19456,t=2,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=16$m=19456,t=2,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=19456,t=2$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=19456,t=0,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=99999999,t=2,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=19456,t=2,p=0$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=19456,t=2,p=1,x=3$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=19456,t=2,p=1$!!$" + parts[5],
		"$argon2id$v=19$m=19456,t=2,p=1$" + parts[4] + "$",
		"$argon2id$v=19$m=19456,t=2,p=1$" + parts[4] + "$" + parts[5] + "$",
		"$argon2id$v=19$m=19456,t=2,p=1$QUJD$" + parts[5],
		good + "=",
	}
	for _, h := range bad {
		if _, err := Verify(h, "1234"); !errors.Is(err, ErrMalformed) {
			t.Errorf("Verify(%q) err = %v, want ErrMalformed", h, err)
		}
		if err := Check(h); !errors.Is(err, ErrMalformed) {
			t.Errorf("Check(%q) err = %v", h, err)
		}
		if _, err := Verify(h, "1234"); err != nil && strings.Contains(err.Error(), parts[5]) {
			t.Errorf("error leaks the hash: %v", err)
		}
	}
	if err := Check(good); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyLongPIN(t *testing.T) {
	h, err := Hash("1234")
	if err != nil {
		t.Fatal(err)
	}
	ok, err := Verify(h, strings.Repeat("1", MaxPINLen+1))
	if ok || err != nil {
		t.Fatalf("Verify(long) = %v, %v", ok, err)
	}
}

func BenchmarkVerify(b *testing.B) {
	h, err := Hash("123456")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if ok, _ := Verify(h, "123456"); !ok {
			b.Fatal("verify failed")
		}
	}
}
