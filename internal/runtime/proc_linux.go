package runtime

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

func isRoot() bool { return os.Geteuid() == 0 }

// bootID tells one boot of the machine from another: a pid and start time recorded before
// a reboot name no process after it.
func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}

// procStart returns the start time of pid in clock ticks since boot (field 22 of
// /proc/<pid>/stat), which with the pid and the boot id names one process: a recorded pid
// whose start time differs was reused by another. ok is false when there is no such
// process or it is a zombie.
func procStart(pid int) (start uint64, ok bool) {
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

// procRef names one process across pid reuse and reboots.
type procRef struct {
	Pid   int    `json:"pid"`
	Start uint64 `json:"start"` // procStart
	Boot  string `json:"boot"`  // bootID
}

func refOf(pid int) procRef {
	start, _ := procStart(pid)
	return procRef{Pid: pid, Start: start, Boot: bootID()}
}

// alive reports whether the process still runs (a zombie does not).
func (r procRef) alive() bool {
	if r.Pid <= 0 || r.Boot != bootID() {
		return false
	}
	start, ok := procStart(r.Pid)
	return ok && start == r.Start
}

// signal sends sig to the process if it is still the one recorded, through a pidfd so that
// a pid reused between the check and the kill is never signalled.
func (r procRef) signal(sig unix.Signal) error {
	if r.Boot != bootID() {
		return os.ErrProcessDone
	}
	fd, err := unix.PidfdOpen(r.Pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return os.ErrProcessDone
		}
		if !r.alive() {
			return os.ErrProcessDone
		}
		return unix.Kill(r.Pid, sig) // no pidfd (kernel < 5.3)
	}
	defer unix.Close(fd)
	if start, ok := procStart(r.Pid); !ok || start != r.Start {
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

// wait returns once the process has exited (it need not be our child), or ctx is done.
func (r procRef) wait(ctx context.Context) error {
	if r.Boot != bootID() {
		return nil
	}
	fd, err := unix.PidfdOpen(r.Pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return r.pollWait(ctx) // no pidfd (kernel < 5.3)
	}
	defer unix.Close(fd)
	if start, ok := procStart(r.Pid); !ok || start != r.Start {
		return nil
	}
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 200)
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

func (r procRef) pollWait(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for r.alive() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
