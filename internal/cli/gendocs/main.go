// Command gendocs writes outpost's command reference from its cobra tree.
// Run it with `go generate ./internal/cli`.
package main

import (
	"fmt"
	"os"

	"github.com/outpost-edge/outpost/internal/cli"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gendocs OUT.md")
		os.Exit(2)
	}
	ios, _, _, _ := cli.TestIO()
	root := cli.NewRootCmd(&cli.Factory{IO: ios})
	if err := os.WriteFile(os.Args[1], cli.Reference(root), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
