package cli

import (
	"os"

	"golang.org/x/sys/unix"
)

// cbreak turns off line buffering and echo on the terminal f, so that a key
// is read as it is typed (output and Ctrl-C are unchanged), and returns the
// function that restores it; a no-op for anything but a terminal.
func cbreak(f *os.File) (restore func()) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return func() {}
	}
	t := *old
	t.Lflag &^= unix.ICANON | unix.ECHO
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &t); err != nil {
		return func() {}
	}
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }
}
