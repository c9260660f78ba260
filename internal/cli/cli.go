// Package cli is the tchsm command line. Each command registers itself in commands; flags are
// few, and every long-running command takes its settings from a -config file.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/tchsm/tchsm/internal/logging"
	"github.com/tchsm/tchsm/internal/modexp"
	"github.com/tchsm/tchsm/internal/modexp/openssl"
)

type command struct {
	summary string
	run     func(ctx context.Context, env *env, args []string) error
}

// env is what commands print to and which version they are.
type env struct {
	stdout, stderr io.Writer
	version        string
}

var commands = map[string]command{}

func register(name, summary string, run func(ctx context.Context, e *env, args []string) error) {
	commands[name] = command{summary, run}
}

// errUsage makes Main print the usage and exit 2.
var errUsage = errors.New("usage")

// Main runs the command line and returns the exit code.
func Main(args []string, version string) int {
	e := &env{stdout: os.Stdout, stderr: os.Stderr, version: version}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(e.stdout)
		return 0
	}
	if args[0] == "version" || args[0] == "--version" {
		fmt.Fprintln(e.stdout, "tchsm", version)
		fmt.Fprintln(e.stdout, shareExpLine())
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "tchsm: unknown command %q\n\n", args[0])
		usage(e.stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd.run(ctx, e, args[1:]); err != nil {
		if errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp) {
			return 2
		}
		fmt.Fprintln(e.stderr, "tchsm:", err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "tchsm: threshold signing cluster for DNSSEC signers (RSA: Shoup 2000; Ed25519: DKG + FROST, RFC 9591)\n\nUsage: tchsm COMMAND [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "  version  print the version\n\nRun `tchsm COMMAND -h` for a command's flags.")
}

func newFlags(e *env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: tchsm %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// newLogger returns a command's logger: JSON lines on w (the command's stderr) at level, with
// the one level policy of every tchsm process (internal/logging: "" is info, an unknown level
// an error).
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	log, _, err := logging.Open("", level, w)
	return log, err
}

// shareExpLine says which constant-time exponentiation computes the node's shares (package
// internal/modexp), so that an image can be checked for OpenSSL's.
func shareExpLine() string {
	e, err := modexp.Selected()
	if err != nil {
		return "share exponentiation: " + err.Error()
	}
	if e.Name() == "openssl" {
		return "share exponentiation: openssl (" + openssl.Version() + ")"
	}
	return "share exponentiation: " + e.Name()
}
