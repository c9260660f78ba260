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
	"github.com/tchsm/tchsm/internal/config"
	"github.com/tchsm/tchsm/internal/logging"
	"github.com/tchsm/tchsm/p11shim/token"
)

// DefaultConfigPath is read when TCHSM_CONFIG is not set.
const DefaultConfigPath = "/etc/tchsm/client.json"

// openTimeout bounds client.New in C_Initialize.
const openTimeout = 30 * time.Second

// openBackend opens the cluster client with the loaded client configuration. It is a variable
// so the seam is explicit; the module always uses client.New.
var openBackend = func(ctx context.Context, cfg *config.Client, log *slog.Logger) (client.Backend, error) {
	c, err := client.New(ctx, cfg, clientOptions(cfg, log))
	if err != nil {
		return nil, err
	}
	return c, nil
}

// clientOptions makes the client log into the module's log (pkcs11.log_file) unless the client
// part of the file names a log_file of its own: what the client sees — a node caught returning
// invalid shares, a broker that is away — must reach the operator's log either way.
func clientOptions(cfg *config.Client, log *slog.Logger) client.Options {
	if cfg.LogFile != "" {
		return client.Options{}
	}
	return client.Options{Logger: log.With("component", "client")}
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

// initialize reads the client configuration file at path (once: the client's settings and the
// token's "pkcs11" section come from the same parsed file), opens the log and the backend and
// builds the token.
func initialize(path string) error {
	stateMu.Lock()
	defer stateMu.Unlock()
	if current != nil {
		return errAlreadyInitialized
	}
	var file config.Client
	if err := config.Load(path, &file); err != nil {
		return fmt.Errorf("%w: %w", token.ErrConfig, err)
	}
	cfg := file.TokenSettings()
	log, logFile, err := logging.Open(cfg.LogFile, cfg.LogLevel, nil)
	if err != nil {
		return fmt.Errorf("p11shim: %w", err)
	}
	log = log.With("pid", os.Getpid())
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	b, err := openBackend(ctx, &file, log)
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
