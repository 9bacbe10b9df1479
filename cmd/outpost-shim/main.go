// Command outpost-shim is the parent of the instances of outpost's runc and process
// runtimes (see internal/runtime/shim), when installed: the daemon starts it from the
// directory its own binary is in, one for all the instances it starts, and else
// re-executes its own binary as the shim (outpost-daemon, as released, which shares its
// pages with the daemon and costs the device less: see docs/benchmarks.md). It links only
// what the shim needs, so that it costs as little memory as a Go process of its own can.
package main

import (
	"os"

	"github.com/outpost-edge/outpost/internal/runtime/shim"
)

func main() {
	os.Exit(shim.Main())
}
