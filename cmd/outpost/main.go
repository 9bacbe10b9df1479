// Command outpost is an open, light toolkit for edge modules: images, instances,
// identities, twins and offline operation, in one binary.
package main

import (
	"os"

	"github.com/outpost-edge/outpost/internal/cli"
)

func main() {
	os.Exit(cli.Main())
}
