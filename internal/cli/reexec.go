package cli

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/tchsm/tchsm/internal/config"
)

// dropPassphraseEnv keeps $TCHSM_PASSPHRASE out of a node's /proc/PID/environ for its life:
// unsetting it would not change what the kernel shows (the initial environment stays in the
// process's memory), so the process re-executes itself, same pid and arguments, with an
// environment without it, and hands the passphrase over on a pipe whose read end is named by
// $TCHSM_PASSPHRASE_FD (config.Node.Passphrase reads and closes it). It returns only when
// there is nothing to do or the re-execution failed.
func dropPassphraseEnv() error {
	p, ok := os.LookupEnv(config.EnvPassphrase)
	if !ok {
		return nil
	}
	if len(p) > 4096 {
		return fmt.Errorf("%s: longer than 4096 bytes", config.EnvPassphrase)
	}
	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, config.EnvPassphrase+"=") && !strings.HasPrefix(kv, config.EnvPassphraseFD+"=") {
			env = append(env, kv)
		}
	}
	if p == "" {
		// Nothing secret, but the variable still goes.
		return syscall.Exec("/proc/self/exe", os.Args, env)
	}
	var fds [2]int
	if err := syscall.Pipe(fds[:]); err != nil { // no close-on-exec: the new image reads it
		return fmt.Errorf("passphrase pipe: %w", err)
	}
	b := []byte(p)
	_, err := syscall.Write(fds[1], b) // a pipe holds 64 KiB: this does not block
	clear(b)
	syscall.Close(fds[1])
	if err != nil {
		syscall.Close(fds[0])
		return fmt.Errorf("passphrase pipe: %w", err)
	}
	env = append(env, config.EnvPassphraseFD+"="+strconv.Itoa(fds[0]))
	err = syscall.Exec("/proc/self/exe", os.Args, env)
	syscall.Close(fds[0])
	return fmt.Errorf("re-executing without %s: %w", config.EnvPassphrase, err)
}
