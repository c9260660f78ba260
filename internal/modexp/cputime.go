package modexp

import (
	"runtime"
	"sync/atomic"
	"time"
)

// cpuNanos is the thread CPU time spent in Exp by this process (see CPUTime).
var cpuNanos atomic.Int64

// CPUTime is the CPU time this process spent in Exp so far: each exponentiation's thread CPU
// time, measured on the thread it ran on, so that time the thread waited for a core is not
// counted. Measuring CPU outside the share arithmetic (issue 17) subtracts it from the process's
// CPU time; without a thread CPU clock (not Linux) it stays 0.
func CPUTime() time.Duration { return time.Duration(cpuNanos.Load()) }

// timed runs f on a locked thread and adds the thread CPU time it took to cpuNanos.
func timed(f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t0, ok := threadCPU()
	f()
	if t1, ok1 := threadCPU(); ok && ok1 && t1 > t0 {
		cpuNanos.Add(t1 - t0)
	}
}
