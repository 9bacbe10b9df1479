//go:build unix

package imagestore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// lockDir takes an exclusive flock on dir/lock, which the kernel releases
// when its holder dies.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("image store: lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			who := "another process"
			if b, _ := os.ReadFile(path); len(bytes.TrimSpace(b)) > 0 {
				who = "pid " + string(bytes.TrimSpace(b))
			}
			return nil, fmt.Errorf("image store %s is in use by %s (another outpost daemon running?)", dir, who)
		}
		return nil, fmt.Errorf("image store: lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

func isRoot() bool { return os.Geteuid() == 0 }
