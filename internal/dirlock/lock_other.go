//go:build !unix && !windows

package dirlock

import "os"

// tryLock cannot lock here: it does not keep a second process out.
func tryLock(*os.File) error { return nil }
