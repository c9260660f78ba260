// Command bench measures RSA signing throughput and latency through PKCS#11 — tchsm, SoftHSM2,
// any PKCS#11 module — next to Go's crypto/rsa, and the threshold limit C·r/k of a tchsm
// cluster. Run `go run ./bench -help`; see bench/README.md.
package main

import (
	"os"

	"github.com/tchsm/tchsm/bench/internal/harness"
)

func main() { os.Exit(harness.Main(os.Args[1:], os.Stdout, os.Stderr)) }
