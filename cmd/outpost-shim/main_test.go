package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports: the shim runs for as long as any instance runs, so it links only
// the shim package, x/sys/unix and the standard library's basics: no network, TLS, CLI or
// registry code (the atomic-write helper is the standard library's basics too), whose package init and data every shim would carry.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		switch {
		case p == "github.com/outpost-edge/outpost/cmd/outpost-shim",
			p == "github.com/outpost-edge/outpost/internal/runtime/shim",
			p == "github.com/outpost-edge/outpost/internal/atomicfile", // the standard library only
			p == "golang.org/x/sys/unix":
		case strings.Contains(strings.SplitN(p, "/", 2)[0], "."), // not the standard library
			strings.HasPrefix(p, "vendor/"), // the standard library's x/net, x/crypto
			p == "net", strings.HasPrefix(p, "net/"), strings.HasPrefix(p, "crypto"),
			p == "os/exec", p == "log/slog", p == "text/template":
			t.Errorf("outpost-shim links %s", p)
		}
	}
}
