// Package dirlock keeps a second process out of a data dir: an exclusive
// lock on a file in it, with the holder's pid written in the file so that
// the error can name it. The kernel releases the lock when its holder dies,
// so a lock file left behind by a crash is harmless.
package dirlock

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// ErrBusy is what Lock's error wraps when another open file holds the lock.
var ErrBusy = errors.New("in use")

// BusyError says who holds a lock.
type BusyError struct {
	Path   string // the lock file
	Holder string // "pid N", or "another process" when the file names none
}

func (e *BusyError) Error() string { return e.Path + " is held by " + e.Holder }

// Unwrap makes errors.Is(err, ErrBusy) true.
func (e *BusyError) Unwrap() error { return ErrBusy }

// Lock takes the lock file path (made, mode 0600, if missing) without
// waiting, and writes this process's pid in it. The lock is held until the
// returned file is closed. A lock held by another open file fails with a
// *BusyError.
func Lock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := tryLock(f); err != nil {
		f.Close()
		if !errors.Is(err, ErrBusy) {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		who := "another process"
		if b, _ := os.ReadFile(path); len(bytes.TrimSpace(b)) > 0 {
			who = "pid " + string(bytes.TrimSpace(b))
		}
		return nil, &BusyError{Path: path, Holder: who}
	}
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}
