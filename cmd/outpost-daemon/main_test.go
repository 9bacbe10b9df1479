package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports: the daemon binary maps its whole text and read-only data in the device's
// memory (the kernel faults a binary in 64 KiB at a time, and a daemon runs code from all
// over it), so it links the daemon and none of the CLI (cobra, viper), the hub's server,
// the registry, image builds, the TUI or profiling.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const outpost = "github.com/outpost-edge/outpost/"
	deps := strings.Fields(string(out))
	for _, p := range deps {
		switch {
		case strings.HasPrefix(p, "github.com/spf13/"),
			strings.HasPrefix(p, "github.com/charmbracelet/"),
			strings.HasPrefix(p, "charm.land/"),
			strings.HasPrefix(p, outpost+"internal/cli"),
			p == outpost+"internal/hub", strings.HasPrefix(p, outpost+"internal/hub/"),
			strings.HasPrefix(p, outpost+"internal/registry"),
			p == outpost+"internal/image", strings.HasPrefix(p, outpost+"internal/image/"),
			strings.HasPrefix(p, outpost+"internal/query"),
			strings.HasPrefix(p, outpost+"internal/twinedit"),
			strings.HasPrefix(p, outpost+"tui"),
			p == "runtime/pprof", p == "net/http/pprof":
			t.Errorf("outpost-daemon links %s", p)
		}
	}
	if !strings.Contains(string(out), outpost+"internal/daemon\n") {
		t.Errorf("outpost-daemon does not link internal/daemon:\n%s", out)
	}
}
