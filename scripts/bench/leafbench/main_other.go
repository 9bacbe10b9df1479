//go:build !linux

package main

import (
	"fmt"
	"os"
)

// The benchmark reads the daemon's CPU and memory from /proc and ties its
// children's lives to its own (Pdeathsig): Linux only.
func main() {
	fmt.Fprintln(os.Stderr, "leafbench runs on Linux only (it reads /proc): run scripts/bench/leaves.sh on a Linux machine")
	os.Exit(2)
}
