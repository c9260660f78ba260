package token

import (
	"os/exec"
	"strings"
	"testing"
)

// The token is the pure-Go core of the PKCS#11 module: it talks to a cluster only through
// backend.Backend and links no broker library, transport, dealer or client.
func TestTokenLinksNoTransport(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Skipf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case dep == "github.com/rabbitmq/amqp091-go", dep == "github.com/tchsm/tchsm/dealer", dep == "github.com/tchsm/tchsm/client",
			strings.HasPrefix(dep, "github.com/tchsm/tchsm/internal/transport"):
			t.Errorf("p11shim/token depends on %s", dep)
		}
	}
}
