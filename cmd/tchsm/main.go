// Command tchsm runs and manages a tchsm threshold signing cluster. See `tchsm help`.
package main

import (
	"os"

	"github.com/tchsm/tchsm/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { os.Exit(cli.Main(os.Args[1:], version)) }
