package cli

import (
	"io/fs"

	"golang.org/x/sys/windows"
)

// diskFree is the number of bytes the calling user may still write on the
// volume that holds path.
func diskFree(path string) (uint64, error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return 0, err
	}
	var avail, total, free uint64
	if err := windows.GetDiskFreeSpaceEx(p, &avail, &total, &free); err != nil {
		return 0, err
	}
	return avail, nil
}

// fileOwner reports no owner: Windows files have no uid.
func fileOwner(fs.FileInfo) (uid int, ok bool) { return 0, false }
