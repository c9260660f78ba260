//go:build !linux

package node

// asBatch runs f; only Linux has SCHED_BATCH (see sched_linux.go).
func asBatch(f func()) { f() }
