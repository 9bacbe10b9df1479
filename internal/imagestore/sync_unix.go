//go:build unix && !linux

package imagestore

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncFS flushes the filesystems (no syncfs(2) here).
func syncFS(*os.File) error { unix.Sync(); return nil }
