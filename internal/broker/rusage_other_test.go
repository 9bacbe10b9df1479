//go:build !unix

package broker

import "time"

// cpuTime is not measured here.
func cpuTime() time.Duration { return 0 }
