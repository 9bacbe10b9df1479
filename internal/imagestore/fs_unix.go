//go:build unix

package imagestore

import (
	"os"
)

func isRoot() bool { return os.Geteuid() == 0 }
