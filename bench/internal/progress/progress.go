// Package progress draws a one-line progress bar on a terminal. When the output is not a
// terminal it prints nothing but the one summary line per finished step.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Bar is safe for use by one producer at a time; its redraw goroutine runs only between Start
// and Done.
type Bar struct {
	w     io.Writer
	tty   bool
	begin time.Time

	mu      sync.Mutex
	label   string
	start   time.Time
	total   time.Duration
	count   int64
	counter *atomic.Int64
	stop    chan struct{}
	stopped chan struct{}
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// New returns a bar writing to f, animated only if f is a terminal.
func New(f *os.File) *Bar { return NewWriter(f, IsTerminal(f)) }

// NewWriter returns a bar writing to w; tty selects the animated mode.
func NewWriter(w io.Writer, tty bool) *Bar { return &Bar{w: w, tty: tty, begin: time.Now()} }

// Start begins a timed phase: label describes it, total is its expected length (0 if count
// bound), counter (may be nil) counts completed operations and count is their target (0 if
// time bound).
func (b *Bar) Start(label string, total time.Duration, counter *atomic.Int64, count int64) {
	b.finish()
	b.mu.Lock()
	b.label, b.start, b.total, b.counter, b.count = label, time.Now(), total, counter, count
	b.mu.Unlock()
	if !b.tty {
		return
	}
	b.stop, b.stopped = make(chan struct{}), make(chan struct{})
	go b.loop(b.stop, b.stopped)
}

func (b *Bar) loop(stop, stopped chan struct{}) {
	defer close(stopped)
	t := time.NewTicker(150 * time.Millisecond)
	defer t.Stop()
	for {
		b.draw()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

const width = 30

func (b *Bar) draw() {
	b.mu.Lock()
	defer b.mu.Unlock()
	el := time.Since(b.start)
	var n int64
	if b.counter != nil {
		n = b.counter.Load()
	}
	frac := 0.0
	switch {
	case b.count > 0:
		frac = float64(n) / float64(b.count)
	case b.total > 0:
		frac = float64(el) / float64(b.total)
	}
	frac = min(max(frac, 0), 1)
	full := int(frac * width)
	bar := strings.Repeat("█", full) + strings.Repeat("░", width-full)
	rate := ""
	if b.counter != nil && el > 0 {
		rate = fmt.Sprintf("  %7.0f sig/s", float64(n)/el.Seconds())
	}
	fmt.Fprintf(b.w, "\r\033[K%s %s %3.0f%%%s  [%s]", b.label, bar, frac*100, rate, fmtClock(time.Since(b.begin)))
}

func fmtClock(d time.Duration) string {
	s := int(d.Seconds())
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

func (b *Bar) finish() {
	if b.stop == nil {
		return
	}
	close(b.stop)
	<-b.stopped
	b.stop, b.stopped = nil, nil
	fmt.Fprint(b.w, "\r\033[K")
}

// Done ends the current phase and prints line (if not empty) as a permanent line.
func (b *Bar) Done(line string) {
	b.finish()
	if line != "" {
		fmt.Fprintln(b.w, line)
	}
}

// Infof is Logf on a terminal and silent otherwise (phase announcements that are only noise in
// a log).
func (b *Bar) Infof(format string, args ...any) {
	if b.tty {
		b.Logf(format, args...)
	}
}

// Logf prints a permanent line, keeping the bar (if any) below it.
func (b *Bar) Logf(format string, args ...any) {
	b.mu.Lock()
	if b.tty {
		fmt.Fprint(b.w, "\r\033[K")
	}
	fmt.Fprintf(b.w, format+"\n", args...)
	b.mu.Unlock()
}
