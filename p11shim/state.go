package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/tchsm/tchsm/client"
	"github.com/tchsm/tchsm/p11shim/token"
)

// DefaultConfigPath is read when TCHSM_CONFIG is not set.
const DefaultConfigPath = "/etc/tchsm/client.json"

// openTimeout bounds client.Open in C_Initialize.
const openTimeout = 30 * time.Second

// openBackend opens the cluster client from the client configuration file. It is a variable so
// the seam is explicit; the module always uses client.Open.
var openBackend = func(ctx context.Context, path string) (client.Backend, error) {
	c, err := client.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// module is the state of one C_Initialize … C_Finalize. A Go c-shared library is never
// unloaded, so C_Finalize must leave nothing behind: it closes the token (sessions, backend
// connections and their goroutines) and the log file, and C_Initialize starts from scratch.
type module struct {
	tok     *token.Token
	log     *slog.Logger
	logFile io.Closer
}

var (
	stateMu sync.RWMutex
	current *module
)

var errNotInitialized = errors.New("p11shim: not initialised")

// active returns the current module without holding any lock afterwards: a call in flight keeps
// its token even if C_Finalize runs meanwhile (it then fails with token.ErrClosed).
func active() (*module, error) {
	stateMu.RLock()
	defer stateMu.RUnlock()
	if current == nil {
		return nil, errNotInitialized
	}
	return current, nil
}

// initialize loads the configuration at path, opens the log and the backend and builds the
// token.
func initialize(path string) error {
	stateMu.Lock()
	defer stateMu.Unlock()
	if current != nil {
		return errAlreadyInitialized
	}
	cfg, err := token.LoadConfig(path)
	if err != nil {
		return err
	}
	log, logFile, err := openLog(cfg.LogFile, cfg.LogLevel)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	b, err := openBackend(ctx, path)
	if err != nil {
		log.Error("C_Initialize: opening the cluster client failed", "config", path, "err", err)
		closeQuietly(logFile)
		return fmt.Errorf("p11shim: opening cluster client: %w", err)
	}
	tok, err := token.New(cfg, b, log)
	if err != nil {
		b.Close()
		closeQuietly(logFile)
		return err
	}
	current = &module{tok: tok, log: log, logFile: logFile}
	log.Info("C_Initialize", "config", path, "token_label", cfg.TokenLabel, "pid", os.Getpid())
	return nil
}

// finalize tears the module down.
func finalize() error {
	stateMu.Lock()
	m := current
	current = nil
	stateMu.Unlock()
	if m == nil {
		return errNotInitialized
	}
	err := m.tok.Close()
	if err != nil {
		m.log.Warn("C_Finalize: closing", "err", err)
	}
	m.log.Info("C_Finalize")
	closeQuietly(m.logFile)
	return nil
}

var errAlreadyInitialized = errors.New("p11shim: already initialised")

func closeQuietly(c io.Closer) {
	if c != nil {
		c.Close()
	}
}

// openLog opens the log file (appending, mode 0600). No file means no logging: a PKCS#11
// module must not write to its host's stdout or stderr.
func openLog(path, level string) (*slog.Logger, io.Closer, error) {
	if path == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil)), nil, nil
	}
	var lv slog.Level
	if level != "" {
		if err := lv.UnmarshalText([]byte(level)); err != nil {
			return nil, nil, fmt.Errorf("%w: log_level: %w", token.ErrConfig, err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("p11shim: opening log file: %w", err)
	}
	h := slog.NewTextHandler(f, &slog.HandlerOptions{Level: lv})
	return slog.New(h).With("pid", os.Getpid()), f, nil
}
