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
