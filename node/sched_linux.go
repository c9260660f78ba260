package node

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// asBatch runs f, a few milliseconds of arithmetic, on an OS thread marked SCHED_BATCH for the
// duration. A batch thread keeps its fair share of CPU but does not preempt others when it
// wakes, while threads that wake to move a message (the broker, this node's AMQP reader, the
// signer asking) preempt it at once. Without it a request or an answer can wait behind a
// whole exponentiation whenever the cores are busy, which is most of a signature's latency
// on a machine where nodes share cores. Where the policy cannot be set, f runs as is.
func asBatch(f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	old, err := unix.SchedGetAttr(tid, 0)
	if err != nil || old.Policy != unix.SCHED_NORMAL {
		f() // real-time or already batch/idle: leave the operator's choice alone
		return
	}
	batch := *old
	batch.Policy = unix.SCHED_BATCH // the nice value stays
	if unix.SchedSetAttr(tid, &batch, 0) != nil {
		f()
		return
	}
	defer unix.SchedSetAttr(tid, old, 0)
	f()
}
