//go:build !linux

package devloop

import "time"

// waitProcessesGone has no process table to look at here.
func waitProcessesGone(string, time.Duration) []string { return nil }
