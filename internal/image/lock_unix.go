//go:build unix

package image

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// lock takes the cache's lock: a flock on .outpost/lock, held by one
// process at a time, plus a mutex within this process.
func (c *Cache) lock() (unlock func(), err error) {
	processLock.Lock()
	path := c.lockPath()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if os.IsNotExist(err) {
		if err = os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
			f, err = os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
		}
	}
	if err != nil {
		processLock.Unlock()
		return nil, c.writeErr(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		processLock.Unlock()
		return nil, c.writeErr(err)
	}
	return func() {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
		processLock.Unlock()
	}, nil
}
