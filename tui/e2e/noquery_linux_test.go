//go:build linux

package e2e_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a new pseudo-terminal: the master side (that the test reads)
// and the terminal (the command's standard streams).
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil { // unlockpt
		m.Close()
		t.Fatalf("unlock the pty: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN) // ptsname
	if err != nil {
		m.Close()
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Fatalf("open the pty's terminal: %v", err)
	}
	if err := unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 80}); err != nil {
		t.Fatalf("pty size: %v", err)
	}
	return m, s
}

// TestNoTerminalQuery: a command other than tui, run on a terminal that
// never answers (script, a relayed pty, a serial console), sends the terminal
// no query (OSC 11 background colour, DSR cursor position) and exits 0.
// Bubble Tea v1's package init asked for the background colour of every
// command's terminal and waited for an answer that never came.
func TestNoTerminalQuery(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--help"}, {"list", "--help"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			master, tty := openPTY(t)
			defer master.Close()
			cmd := exec.Command(binary, args...)
			cmd.Env = append(os.Environ(), "TERM=xterm-256color", "COLORTERM=", "NO_COLOR=", "OUTPOST_CONFIG=/dev/null")
			cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			tty.Close() // the command holds the only copy: its exit ends the reads below

			var out bytes.Buffer
			read := make(chan error, 1)
			go func() { // never answers: only reads what the command writes
				_, err := io.Copy(&out, master)
				read <- err
			}()
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			var err error
			select {
			case err = <-done:
			case <-time.After(deadline):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("outpost %s did not exit within %s on a terminal that never answers; it wrote:\n%q", strings.Join(args, " "), deadline, out.String())
			}
			if rerr := <-read; rerr != nil && !errors.Is(rerr, syscall.EIO) {
				t.Fatalf("read the pty: %v", rerr)
			}
			got := out.String()
			head := got[:min(len(got), 200)] // enough to show a query, which comes first
			for _, q := range []string{"\x1b]11;?", "\x1b[6n"} {
				if strings.Contains(got, q) {
					t.Errorf("outpost %s sent the terminal the query %q; it wrote:\n%q…", strings.Join(args, " "), q, head)
				}
			}
			if err != nil {
				t.Errorf("outpost %s: %v; it wrote:\n%q…", strings.Join(args, " "), err, head)
			}
			if !strings.Contains(got, "outpost") {
				t.Errorf("outpost %s wrote nothing that names outpost:\n%q…", strings.Join(args, " "), head)
			}
		})
	}
}

// TestTUISilentTerminal: the TUI on a terminal that never answers its
// queries (background colour, synchronized output, keyboard) draws its
// first frame without waiting for answers and quits on q.
func TestTUISilentTerminal(t *testing.T) {
	master, tty := openPTY(t)
	defer master.Close()
	cmd := exec.Command(binary, "tui", "--mgmt-socket", t.TempDir()+"/none.sock")
	cmd.Env = append(os.Environ(), "TERM=xterm-256color", "NO_COLOR=", "OUTPOST_CONFIG=/dev/null")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	}()

	frame := make(chan string, 1)
	var out bytes.Buffer
	go func() {
		buf := make([]byte, 4096)
		sent := false
		for {
			n, err := master.Read(buf)
			out.Write(buf[:n])
			if !sent && strings.Contains(out.String(), "no modules") {
				frame <- out.String()
				sent = true
			}
			if err != nil {
				return
			}
		}
	}()
	select {
	case <-frame:
	case <-time.After(deadline):
		t.Fatalf("the TUI drew no frame within %s on a terminal that never answers", deadline)
	}
	if _, err := master.Write([]byte("q")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("outpost tui, q: %v", waitErr)
		}
	case <-time.After(deadline):
		t.Fatalf("outpost tui did not quit on q within %s", deadline)
	}
}
