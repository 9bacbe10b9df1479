//go:build !linux

package store

import (
	"errors"
	"os"
)

// overwrite writes data at the start of the existing file name, a spare of the same size,
// and syncs it (where fdatasync is missing, a full Sync: on darwin it uses F_FULLFSYNC).
func overwrite(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(data, 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// exchange is Linux's renameat2 RENAME_EXCHANGE; elsewhere install links and renames.
func exchange(a, b string) error { return errors.ErrUnsupported }

func exchangeUnsupported(err error) bool { return errors.Is(err, errors.ErrUnsupported) }
