//go:build windows

package store

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// recycle is off on Windows: replacing a file that has another name and may be open is
// not worth the trouble there.
const recycle = false

// tryLock locks one byte far beyond the end of f, so that others can still read the pid
// at its start. Windows releases the lock when its holder dies.
func tryLock(f *os.File) error {
	ol := &windows.Overlapped{OffsetHigh: 1}
	err := windows.LockFileEx(windows.Handle(f.Fd()),
		windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol)
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) || errors.Is(err, windows.ERROR_IO_PENDING) {
		return errBusy
	}
	return err
}

// syncDir does nothing: Windows cannot flush a directory handle; rename writes through.
func syncDir(*os.File) error { return nil }

// isNoSpace tells a write that failed for want of disk space or quota.
func isNoSpace(err error) bool {
	return errors.Is(err, windows.ERROR_DISK_FULL) || errors.Is(err, windows.ERROR_HANDLE_DISK_FULL) ||
		errors.Is(err, windows.ERROR_DISK_QUOTA_EXCEEDED)
}
