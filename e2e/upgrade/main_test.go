package upgrade_test

import (
	"os"
	"testing"

	"github.com/tchsm/tchsm/internal/testcluster"
)

// TestMain removes the binaries testcluster built (the old release's stays in GOCACHE).
func TestMain(m *testing.M) {
	code := m.Run()
	testcluster.RemoveBuilds()
	os.Exit(code)
}
