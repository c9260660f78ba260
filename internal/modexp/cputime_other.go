//go:build !linux

package modexp

func threadCPU() (int64, bool) { return 0, false }
