package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{
		"": slog.LevelInfo, "info": slog.LevelInfo, "INFO": slog.LevelInfo,
		"debug": slog.LevelDebug, "Debug": slog.LevelDebug,
		"warn": slog.LevelWarn, "error": slog.LevelError,
	} {
		got, err := ParseLevel(in)
		if err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	// slog's own parser takes offsets and the CLI once fell back to info: neither any more.
	for _, in := range []string{"loud", "warning", "info+2", "DEBUG-4", " info", "0"} {
		if _, err := ParseLevel(in); !errors.Is(err, ErrLevel) || !strings.Contains(err.Error(), Levels) {
			t.Errorf("ParseLevel(%q) = %v; want ErrLevel naming the levels", in, err)
		}
	}
}

func TestOpenWriter(t *testing.T) {
	var buf bytes.Buffer
	log, c, err := Open("", "warn", &buf)
	if err != nil || c != nil {
		t.Fatal(c, err)
	}
	log.Info("hidden")
	log.Warn("shown", "k", 1)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("not one JSON line: %q: %v", buf.String(), err)
	}
	if rec["msg"] != "shown" || rec["level"] != "WARN" || rec["k"] != 1.0 {
		t.Fatalf("%v", rec)
	}
	if _, _, err := Open("", "loud", &buf); !errors.Is(err, ErrLevel) {
		t.Fatal(err)
	}
}

func TestOpenNowhere(t *testing.T) {
	log, c, err := Open("", "", nil)
	if err != nil || c != nil || log == nil {
		t.Fatal(log, c, err)
	}
	if log.Enabled(t.Context(), slog.LevelError) {
		t.Fatal("a logger with no file and no writer logs")
	}
	// The level is checked even when nothing is written: a bad file fails at start-up.
	if _, _, err := Open("", "loud", nil); !errors.Is(err, ErrLevel) {
		t.Fatal(err)
	}
}

func TestOpenFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.log")
	var stderr bytes.Buffer
	for i := range 2 { // appends
		log, c, err := Open(p, "debug", &stderr)
		if err != nil || c == nil {
			t.Fatal(c, err)
		}
		log.Debug("line", "i", i)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if stderr.Len() != 0 {
		t.Fatalf("wrote to w although a file was given: %q", stderr.String())
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 {
		t.Fatalf("%q", b)
	}
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Fatalf("not JSON: %q", l)
		}
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	if _, _, err := Open(filepath.Join(p, "sub"), "", nil); err == nil {
		t.Fatal("opened a log file under a file")
	}
	if _, _, err := Open(p, "loud", nil); !errors.Is(err, ErrLevel) {
		t.Fatal(err)
	}
}
