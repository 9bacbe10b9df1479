package store

import (
	"os"
	"os/exec"
	"runtime"
	"testing"
)

const isWindows = runtime.GOOS == "windows"

// childCommand re-runs the test binary to run only the test named test, with env added.
func childCommand(t testing.TB, test string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	return cmd
}
