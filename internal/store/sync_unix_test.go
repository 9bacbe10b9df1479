//go:build unix

package store

import "syscall"

// syncAll flushes every file system, so that benchmarks do not measure the write-back of
// their fixtures.
func syncAll() { syscall.Sync() }
