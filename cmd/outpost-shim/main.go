// Command outpost-shim is the parent of the instances of outpost's runc and process
// runtimes (see internal/runtime/shim): `outpost daemon` starts it from the directory its
// own binary is in, one for all the instances it starts. It links only what the shim
// needs, so that it costs the device as little memory as a Go process can.
package main

import (
	"os"

	"github.com/outpost-edge/outpost/internal/runtime/shim"
)

func main() {
	os.Exit(shim.Main())
}
