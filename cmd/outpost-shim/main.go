// Command outpost-shim is the parent of one instance of outpost's runc and process
// runtimes (see internal/runtime/shim): `outpost daemon` starts one per instance from the
// directory its own binary is in. It links only what the shim needs, so that each costs
// the device as little memory as a Go process can.
package main

import (
	"os"

	"github.com/outpost-edge/outpost/internal/runtime/shim"
)

func main() {
	os.Exit(shim.Main())
}
