package imagestore

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncFS flushes the filesystem that holds f (one syncfs(2) instead of an
// fsync per unpacked file).
func syncFS(f *os.File) error { return unix.Syncfs(int(f.Fd())) }
