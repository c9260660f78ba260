package node_test

import (
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/tchsm/tchsm/internal/modexp"
	"github.com/tchsm/tchsm/node"
	"github.com/tchsm/tchsm/node/nodetest"
)

// TestForcedEngineNotLinked: a node told by $TCHSM_MODEXP to use an exponentiation engine its
// binary does not link refuses to start, rather than computing shares another way. The engine
// is chosen once per process, so the node runs in a child process of the test binary.
func TestForcedEngineNotLinked(t *testing.T) {
	if os.Getenv("TCHSM_NODE_TEST_CHILD") == "engine" {
		c := nodetest.NewInMemory(t, nodetest.Options{K: 1, N: 1})
		cfg := *c.Nodes[0]
		err := node.Run(nodetest.Ctx(t, 10*time.Second), &cfg, node.Options{Logger: c.Logger})
		if !errors.Is(err, modexp.ErrUnknownEngine) {
			t.Fatalf("Run with $TCHSM_MODEXP=%s: %v, want ErrUnknownEngine", os.Getenv(modexp.EnvVar), err)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestForcedEngineNotLinked$", "-test.count", "1")
	cmd.Env = append(os.Environ(), "TCHSM_NODE_TEST_CHILD=engine", modexp.EnvVar+"=nonesuch")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
