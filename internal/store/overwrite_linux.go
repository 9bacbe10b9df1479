package store

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// overwrite writes data at the start of the existing file name, a spare of the same size,
// and fdatasyncs it: after an in-place overwrite of the same size that flushes data only,
// no journal commit. It makes the system calls itself: os.OpenFile would also try to add
// the file to the poller and set a finalizer, a third of overwrite's CPU time besides the
// fdatasync.
func overwrite(name string, data []byte) error {
	var fd int
	err := retryEINTR(func() (err error) {
		fd, err = unix.Open(name, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return &os.PathError{Op: "open", Path: name, Err: err}
	}
	for off := 0; off < len(data) && err == nil; {
		var n int
		if n, err = unix.Pwrite(fd, data[off:], int64(off)); err == unix.EINTR {
			err = nil
		} else if err == nil && n == 0 {
			err = io.ErrShortWrite
		}
		off += n
	}
	if err != nil {
		err = &os.PathError{Op: "write", Path: name, Err: err}
	} else if err = retryEINTR(func() error { return unix.Fdatasync(fd) }); err != nil {
		err = &os.PathError{Op: "fdatasync", Path: name, Err: err}
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = &os.PathError{Op: "close", Path: name, Err: cerr}
	}
	return err
}

func retryEINTR(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
}

// exchange swaps the files named a and b in one atomic rename (renameat2's
// RENAME_EXCHANGE): installing a record written under a temp name leaves the record it
// replaces under that temp name, ready to become a spare, where a link and a rename took
// two system calls.
func exchange(a, b string) error {
	if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE); err != nil {
		return &os.LinkError{Op: "exchange", Old: a, New: b, Err: err}
	}
	return nil
}

// exchangeUnsupported tells exchange's error on a kernel or file system without
// RENAME_EXCHANGE.
func exchangeUnsupported(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTSUP)
}
