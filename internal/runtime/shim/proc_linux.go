//go:build linux

package shim

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// BootID tells one boot of the machine from another: a pid and start time recorded before
// a reboot name no process after it.
func BootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}

// ProcStart returns the start time of pid in clock ticks since boot (field 22 of
// /proc/<pid>/stat), which with the pid and the boot id names one process: a recorded pid
// whose start time differs was reused by another. ok is false when there is no such
// process or it is a zombie.
func ProcStart(pid int) (start uint64, ok bool) {
	if pid <= 0 {
		return 0, false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); starttime is field 22.
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0, false
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return start, err == nil
}

// ProcRef names one process across pid reuse and reboots.
type ProcRef struct {
	Pid   int    `json:"pid"`
	Start uint64 `json:"start"` // ProcStart
	Boot  string `json:"boot"`  // BootID
}

// RefOf returns the ProcRef of the process pid now.
func RefOf(pid int) ProcRef {
	start, _ := ProcStart(pid)
	return ProcRef{Pid: pid, Start: start, Boot: BootID()}
}

// Alive reports whether the process still runs (a zombie does not).
func (r ProcRef) Alive() bool {
	if r.Pid <= 0 || r.Boot != BootID() {
		return false
	}
	start, ok := ProcStart(r.Pid)
	return ok && start == r.Start
}

// Signal sends sig to the process if it is still the one recorded, through a pidfd so that
// a pid reused between the check and the kill is never signalled.
func (r ProcRef) Signal(sig unix.Signal) error {
	if r.Boot != BootID() {
		return os.ErrProcessDone
	}
	fd, err := unix.PidfdOpen(r.Pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return os.ErrProcessDone
		}
		if !r.Alive() {
			return os.ErrProcessDone
		}
		return unix.Kill(r.Pid, sig) // no pidfd (kernel < 5.3)
	}
	defer unix.Close(fd)
	if start, ok := ProcStart(r.Pid); !ok || start != r.Start {
		return os.ErrProcessDone
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
	return nil
}

// Wait returns once the process has exited (it need not be our child), or ctx is done.
// It waits on a pidfd through Go's poller, so that a daemon waiting for many instances
// holds no thread for each.
func (r ProcRef) Wait(ctx context.Context) error {
	if r.Boot != BootID() {
		return nil
	}
	fd, err := unix.PidfdOpen(r.Pid, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.EINVAL) {
		fd, err = unix.PidfdOpen(r.Pid, 0) // kernel < 5.10: no PIDFD_NONBLOCK
	}
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return r.PollWait(ctx) // no pidfd (kernel < 5.3)
	}
	// A non-blocking fd goes into the poller.
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	if start, ok := ProcStart(r.Pid); !ok || start != r.Start {
		return nil
	}
	if f.SetReadDeadline(time.Time{}) != nil { // not in the poller
		return r.blockingWait(ctx, fd)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Now()) })
	defer stop()
	exited := func(fd uintptr) bool {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		return n > 0 || (err != nil && !errors.Is(err, unix.EINTR))
	}
	if err := rc.Read(exited); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		return err
	}
	return nil
}

// blockingWait waits for the pidfd to be readable with poll(2) in a loop, holding a
// thread: for a pidfd the poller does not take.
func (r ProcRef) blockingWait(ctx context.Context, fd int) error {
	for {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 200)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
		if n > 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// PollWait is Wait by polling Alive, for a kernel without pidfds.
func (r ProcRef) PollWait(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for r.Alive() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
