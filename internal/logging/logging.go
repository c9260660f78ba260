// Package logging is the one log set-up of every tchsm process: the node, the dealer, the
// client, the CLI and the PKCS#11 module read a log level (and, for the client and the module,
// a log file) from their configuration and get their logger from Open.
//
// Logs are JSON lines (log/slog's JSONHandler). A level is one of debug, info, warn and error
// (any case); the empty string means info and anything else is an error, so that a typo fails
// at start-up instead of silencing or flooding the log.
package logging

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// ErrLevel is wrapped by ParseLevel's errors.
var ErrLevel = errors.New("logging: unknown log level")

// Levels lists the accepted level names, for messages and flag help.
const Levels = "debug, info, warn, error"

// ParseLevel parses a configured log level: "" is info.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%w %q (want one of %s)", ErrLevel, s, Levels)
}

// Open returns a JSON logger at level. It writes to file, appended and created with mode 0600
// (logs name keys and nodes), when file is set; otherwise to w, and nowhere when w is nil too
// (a library such as the PKCS#11 module must not write to its host's stdout or stderr). The
// closer closes the file; it is nil when Open opened none.
func Open(file, level string, w io.Writer) (*slog.Logger, io.Closer, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, nil, err
	}
	if file == "" {
		if w == nil {
			return slog.New(slog.DiscardHandler), nil, nil
		}
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl})), nil, nil
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("logging: opening log file: %w", err)
	}
	return slog.New(slog.NewJSONHandler(f, &slog.HandlerOptions{Level: lvl})), f, nil
}
