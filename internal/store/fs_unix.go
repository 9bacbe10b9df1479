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

// tryLock takes an exclusive flock on f without waiting; errBusy if another open file holds
// it. The kernel releases it when its holder dies, so a LOCK file left behind is harmless.
func tryLock(f *os.File) error {
	err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return errBusy
	}
	return err
}

// syncDir makes the entries of the directory d durable.
func syncDir(d *os.File) error { return d.Sync() }

// isNoSpace tells a write that failed for want of disk space or quota.
func isNoSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}
