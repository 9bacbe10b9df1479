package registrytest

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the registry process die with the test binary, even
// when a test times out and no cleanup runs.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
