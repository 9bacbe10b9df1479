package cli

import (
	"strings"
	"testing"
)

func TestDaemonOSError(t *testing.T) {
	for _, goos := range []string{"linux", "darwin"} {
		if err := daemonOSError(goos); err != nil {
			t.Errorf("daemonOSError(%q) = %v, want nil", goos, err)
		}
	}
	err := daemonOSError("windows")
	if err == nil {
		t.Fatal(`daemonOSError("windows") = nil, want an error`)
	}
	if !strings.Contains(err.Error(), "does not run on windows") || !strings.Contains(hintFor(err), "Linux") {
		t.Errorf("error %q, hint %q: want it to say the daemon does not run on windows and where it does", err, hintFor(err))
	}
	if got := exitCode(err); got != ExitFailure {
		t.Errorf("exit code %d, want %d", got, ExitFailure)
	}
}
