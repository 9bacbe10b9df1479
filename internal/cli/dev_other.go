//go:build !linux

package cli

import "os"

// cbreak is a no-op here: q is read at the end of a line.
func cbreak(*os.File) (restore func()) { return func() {} }
