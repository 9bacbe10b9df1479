//go:build linux || darwin || freebsd

package cli

import (
	"io/fs"
	"syscall"
)

// diskFree is the number of bytes an unprivileged user may still write on
// the file system that holds path.
func diskFree(path string) (uint64, error) {
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(path, &sfs); err != nil {
		return 0, err
	}
	// The fields' types differ between systems (and between 32 and 64 bits).
	return uint64(sfs.Bavail) * uint64(sfs.Bsize), nil
}

// fileOwner is the uid that owns the file fi describes; ok is false where
// the system has no uids.
func fileOwner(fi fs.FileInfo) (uid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
