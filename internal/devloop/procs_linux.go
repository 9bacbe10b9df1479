package devloop

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// waitProcessesGone waits (up to a while) until no process runs from dir
// or names it on its command line: the runtime's shim exits by itself once
// its last instance is removed and cleaned up. It returns those left.
func waitProcessesGone(dir string, within time.Duration) []string {
	deadline := time.Now().Add(within)
	for {
		left := processesUnder(dir)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// processesUnder lists the processes (pid: command line) whose command
// line, executable or working directory is in dir.
func processesUnder(dir string) []string {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	self := "/proc/" + strconv.Itoa(os.Getpid())
	var left []string
	for _, p := range procs {
		if p == self {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		exe, _ := os.Readlink(filepath.Join(p, "exe"))
		cwd, _ := os.Readlink(filepath.Join(p, "cwd"))
		if strings.Contains(string(cmdline), dir+"/") || strings.HasPrefix(exe, dir+"/") || strings.HasPrefix(cwd, dir+"/") || cwd == dir {
			left = append(left, filepath.Base(p)+": "+strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " ")))
		}
	}
	return left
}
