package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestModuleLinksNoDealer checks that libtchsm.so links neither the dealer nor key generation:
// a signer host never holds a whole key, so the code that makes one stays out of the module.
func TestModuleLinksNoDealer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Skipf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch dep {
		case "github.com/tchsm/tchsm/dealer", "github.com/tchsm/tchsm/internal/cli", "github.com/tchsm/tchsm/scheme/shoup/keygen":
			t.Errorf("p11shim depends on %s", dep)
		}
	}
}

// TestModuleLinksNoOpenSSL checks that libtchsm.so does not link libcrypto: OpenSSL's
// exponentiation computes the nodes' shares (internal/modexp/openssl), and the module computes
// none, so it stays out (a second libcrypto inside the signer's process is a version clash).
func TestModuleLinksNoOpenSSL(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{join .CgoLDFLAGS \" \"}}", ".").CombinedOutput()
	if err != nil {
		t.Skipf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, flags, _ := strings.Cut(line, " ")
		if strings.HasPrefix(pkg, "github.com/tchsm/tchsm/internal/modexp/openssl") || strings.Contains(flags, "-lcrypto") {
			t.Errorf("p11shim depends on %s (LDFLAGS %q)", pkg, flags)
		}
	}
}
