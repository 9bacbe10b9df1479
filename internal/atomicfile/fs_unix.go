//go:build !windows

package atomicfile

import (
	"errors"
	"os"
	"syscall"
)

// Rename renames from to to, replacing to.
func Rename(from, to string) error { return os.Rename(from, to) }

func syncDir(d *os.File) error {
	err := d.Sync()
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, errors.ErrUnsupported) {
		return nil // a file system that cannot sync directories (some FUSE, 9p)
	}
	return err
}
