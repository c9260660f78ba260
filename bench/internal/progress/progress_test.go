package progress

import (
	"bytes"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestNotTerminalPrintsOnlyStepLines(t *testing.T) {
	var buf bytes.Buffer
	b := NewWriter(&buf, false)
	var n atomic.Int64
	b.Infof("phase")
	b.Start("softhsm c=1", 50*time.Millisecond, &n, 0)
	n.Add(10)
	time.Sleep(20 * time.Millisecond)
	b.Done("softhsm c=1 done")
	b.Logf("warning %d", 1)
	if got, want := buf.String(), "softhsm c=1 done\nwarning 1\n"; got != want {
		t.Errorf("output %q, want %q", got, want)
	}
}

func TestTerminalDrawsBar(t *testing.T) {
	var buf syncBuf
	b := NewWriter(&buf, true)
	var n atomic.Int64
	n.Add(5)
	b.Start("gorsa c=2", 100*time.Millisecond, &n, 10)
	time.Sleep(50 * time.Millisecond)
	b.Done("gorsa c=2 done")
	out := buf.String()
	for _, want := range []string{"\r\033[K", "gorsa c=2", "50%", "sig/s", "gorsa c=2 done\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q: %q", want, out)
		}
	}
}

type syncBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
