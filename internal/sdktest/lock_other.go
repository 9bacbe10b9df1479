//go:build !unix

package sdktest

import "os"

// tryLock takes no lock where flock(2) is not: the tests that use it run on
// Linux; elsewhere Listen only retries the port.
func tryLock(*os.File) (taken bool, err error) { return true, nil }
