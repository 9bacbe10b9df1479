//go:build unix

package store

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// recycle says whether replaced and deleted record files are kept to be overwritten by
// later writes (see spares).
const recycle = true

// syncDir makes the entries of the directory d durable.
func syncDir(d *os.File) error { return d.Sync() }

// isNoSpace tells a write that failed for want of disk space or quota.
func isNoSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}
