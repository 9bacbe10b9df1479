// Command outpost-daemon is the device daemon as `outpost daemon` runs it: that command
// reads the flags, environment and config file, then executes this binary from the
// directory its own binary is in (same process id, for systemd) and hands it the
// configuration (see internal/daemon.Exec). It links the daemon and none of the CLI, hub,
// registry or TUI, so that the daemon maps a binary of the daemon's code only.
package main

import (
	"os"

	"github.com/outpost-edge/outpost/internal/daemon"
)

func main() {
	os.Exit(daemon.Main())
}
