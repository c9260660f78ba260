package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/internal/config"
)

func init() {
	register("pin", "set, change or unlock a client's user PIN on the nodes (pin set|change|unlock CLIENT)", runPIN)
}

// EnvPIN is where the tchsm command takes the user PIN from without -pin-file or a prompt;
// EnvNewPIN the new PIN of `tchsm pin set|change`.
const (
	EnvPIN    = "TCHSM_PIN"
	EnvNewPIN = "TCHSM_NEW_PIN"
)

// errNoPIN: neither -pin-file, the environment nor a terminal gave a PIN.
var errNoPIN = errors.New("no PIN")

// readPIN returns the PIN from file (its first line), else $env, else a prompt on the terminal
// (without echo); an error when none of them gives one.
func readPIN(e *env, file, envName, prompt string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		line, _, _ := strings.Cut(string(b), "\n")
		clear(b)
		return []byte(strings.TrimRight(line, "\r")), nil
	}
	if v := os.Getenv(envName); v != "" {
		return []byte(v), nil
	}
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: give -pin-file or $%s (no terminal to ask on)", errNoPIN, envName)
	}
	defer tty.Close()
	fd := int(tty.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, fmt.Errorf("no PIN: give -pin-file or $%s", envName)
	}
	noEcho := *old
	noEcho.Lflag &^= unix.ECHO
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &noEcho); err != nil {
		return nil, err
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	fmt.Fprint(tty, prompt)
	line, err := bufio.NewReader(tty).ReadString('\n')
	fmt.Fprintln(tty)
	if err != nil {
		return nil, fmt.Errorf("reading the PIN: %w", err)
	}
	return []byte(strings.TrimRight(line, "\r\n")), nil
}

// login logs c in to the nodes with the PIN from pinFile, $TCHSM_PIN or a prompt. A cluster
// whose nodes hold no PIN for the client (not migrated) needs none: the command goes on, with a
// warning.
func login(ctx context.Context, e *env, c *client.Client, pinFile string) error {
	pin, err := readPIN(e, pinFile, EnvPIN, "PIN: ")
	if err != nil {
		return err
	}
	defer clear(pin)
	st, err := c.Login(ctx, pin)
	switch {
	case errors.Is(err, client.ErrNoPINVerifier):
		fmt.Fprintln(e.stderr, "warning: the nodes hold no PIN for this client, so its files alone sign: tchsm pin set installs one")
		return nil
	case errors.Is(err, client.ErrPINIncorrect):
		return fmt.Errorf("%w (%d tries left before the nodes lock this client)", err, st.Remaining)
	}
	return err
}

// loginForDealer logs c in as login does, for a request to the dealer that changes keys (the
// dealer wants the nodes' login tickets, client/tickets.go); without any PIN to take (no
// -pin-file, $TCHSM_PIN or terminal) it goes on without a login, so that a script for a cluster
// whose nodes hold no PIN keeps working: where they hold one, the request then fails with "not
// logged in".
func loginForDealer(ctx context.Context, e *env, c *client.Client, pinFile string) error {
	err := login(ctx, e, c, pinFile)
	if errors.Is(err, errNoPIN) {
		return nil
	}
	return err
}

func runPIN(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, "Usage: tchsm pin set|change|unlock [flags] [CLIENT]")
		return errUsage
	}
	sub, args := args[0], args[1:]
	fs := newFlags(e, "pin "+sub, "pin "+sub+" [flags] [CLIENT]")
	cfgPath := clientConfigFlag(fs)
	pinFile := fs.String("pin-file", "", "file holding the current PIN (else $"+EnvPIN+", else a prompt)")
	newPINFile := fs.String("new-pin-file", "", "set, change: file holding the new PIN (else $"+EnvNewPIN+", else a prompt)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := openClient(ctx, e, *cfgPath)
	if err != nil {
		return err
	}
	defer c.Close()
	switch sub {
	case "set", "change":
		if fs.NArg() != 0 {
			return fmt.Errorf("pin %s takes no argument: it changes this client's PIN", sub)
		}
		var old []byte
		if sub == "change" {
			if old, err = readPIN(e, *pinFile, EnvPIN, "current PIN: "); err != nil {
				return err
			}
			defer clear(old)
		}
		nw, err := readPIN(e, *newPINFile, EnvNewPIN, "new PIN: ")
		if err != nil {
			return err
		}
		defer clear(nw)
		if *newPINFile == "" && os.Getenv(EnvNewPIN) == "" {
			again, err := readPIN(e, "", EnvNewPIN, "new PIN again: ")
			if err != nil {
				return err
			}
			same := string(again) == string(nw)
			clear(again)
			if !same {
				return errors.New("the two new PINs differ")
			}
		}
		if len(nw) < 4 || len(nw) > 255 {
			return errors.New("a PIN has 4 to 255 bytes")
		}
		_, rs, err := c.ChangePINResults(ctx, old, nw)
		for _, r := range rs {
			status := r.Status
			if r.Err != nil {
				status = fmt.Sprintf("%s %v", status, r.Err)
			}
			fmt.Fprintf(e.stdout, "%s\t%s\n", r.Node, strings.TrimSpace(status))
		}
		if err != nil {
			if sub == "set" && errors.Is(err, client.ErrPINIncorrect) {
				return fmt.Errorf("%w: the nodes hold a PIN for this client already: use tchsm pin change", err)
			}
			return err
		}
		for _, r := range rs {
			if r.Status != "ok" {
				fmt.Fprintf(e.stderr, "warning: %s did not change the PIN; run the command again when it is back (the nodes that changed it count one wrong PIN then, reset at the next login)\n", r.Node)
			}
		}
		return dropPINHash(e, *cfgPath)
	case "unlock":
		if fs.NArg() != 1 {
			return errors.New("pin unlock needs the id of the client to unlock")
		}
		if err := login(ctx, e, c, *pinFile); err != nil {
			return err
		}
		rs, err := c.Unlock(ctx, fs.Arg(0))
		for _, r := range rs {
			status := r.Status
			if r.Err != nil {
				status = fmt.Sprintf("%s %v", status, r.Err)
			}
			fmt.Fprintf(e.stdout, "%s\t%s\n", r.Node, strings.TrimSpace(status))
		}
		return err
	}
	return fmt.Errorf("pin %s: want set, change or unlock", sub)
}

// dropPINHash removes the pkcs11 section's user_pin_hash from a client file once the nodes
// hold the PIN: a hash there only lets a copy of the file guess the PIN offline.
func dropPINHash(e *env, path string) error {
	var raw map[string]any
	if err := readJSON(path, &raw); err != nil {
		return err
	}
	sec, ok := raw["pkcs11"].(map[string]any)
	if !ok {
		return nil
	}
	if _, ok := sec["user_pin_hash"]; !ok {
		return nil
	}
	delete(sec, "user_pin_hash")
	if err := config.Save(path, raw, 0o600); err != nil {
		return fmt.Errorf("the nodes hold the new PIN, but removing user_pin_hash from %s failed: %w", path, err)
	}
	fmt.Fprintf(e.stderr, "removed user_pin_hash from %s: the nodes check the PIN now\n", path)
	return nil
}
