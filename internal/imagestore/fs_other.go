//go:build !unix

package imagestore

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockDir opens dir/lock; without flock it does not keep a second process
// out.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("image store: lock: %w", err)
	}
	return f, nil
}

func isRoot() bool { return false }

// syncFS has nothing cheaper than fsync per file here; unpacked files are
// left to the OS.
func syncFS(*os.File) error { return nil }
