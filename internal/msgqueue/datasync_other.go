//go:build !linux

package msgqueue

import "os"

// datasync is a full Sync where fdatasync is missing (on darwin, Sync uses F_FULLFSYNC).
func datasync(f *os.File) error { return f.Sync() }
