package cli

import (
	"fmt"
	goruntime "runtime"
)

// daemonOSError says, on a system the device daemon does not run on, that it
// does not and where it does; nil elsewhere. outpost builds for Windows for
// its hub and developer commands (build, push, device, twin, …), but the
// daemon needs unix sockets, shims and mount namespaces that Windows lacks.
func daemonOSError(goos string) error {
	if goos != "windows" {
		return nil
	}
	return &ExitError{Code: ExitFailure,
		Err:  fmt.Errorf("daemon: the device daemon does not run on %s/%s", goos, goruntime.GOARCH),
		Hint: "run it on a Linux device (linux/amd64, linux/arm64 or linux/arm/v7), or under WSL 2; the other commands work here"}
}
