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
	"github.com/tchsm/tchsm/internal/logging"
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
	if _, err := logging.ParseLevel(cfg.LogLevel); err != nil {
		return fmt.Errorf("%w: log_level: %w", token.ErrConfig, err)
	}
	log, logFile, err := logging.Open(cfg.LogFile, cfg.LogLevel, nil)
	if err != nil {
		return fmt.Errorf("p11shim: %w", err)
	}
	log = log.With("pid", os.Getpid())
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
