//go:build !unix

package imagestore

import (
	"os"
)

func isRoot() bool { return false }

// syncFS has nothing cheaper than fsync per file here; unpacked files are
// left to the OS.
func syncFS(*os.File) error { return nil }
