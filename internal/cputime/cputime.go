// Package cputime reads the CPU time a process has used, for benchmarks:
// on a machine shared with other jobs it says what a run cost better than
// the wall clock does.
package cputime

import "time"

// Self is the CPU time, user and system, this process has used; 0 where
// the platform does not tell.
func Self() time.Duration { return self() }
