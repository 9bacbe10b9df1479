//go:build !linux

package shim

import (
	"fmt"
	"os"
)

// Hook does nothing: the runc and process runtimes run on Linux only.
func Hook() {}

// Main says that the shim runs on Linux only.
func Main() int {
	fmt.Fprintf(os.Stderr, "%s: the runtime shim runs on Linux only\n", Binary)
	return 2
}
