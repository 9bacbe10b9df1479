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

// syncDir does nothing: Windows cannot flush a directory handle; rename writes through.
func syncDir(*os.File) error { return nil }

// isNoSpace tells a write that failed for want of disk space or quota.
func isNoSpace(err error) bool {
	return errors.Is(err, windows.ERROR_DISK_FULL) || errors.Is(err, windows.ERROR_HANDLE_DISK_FULL) ||
		errors.Is(err, windows.ERROR_DISK_QUOTA_EXCEEDED)
}
