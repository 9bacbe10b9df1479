package agent

import "time"

// HealthCheck is the result of one health check of a module's instance.
type HealthCheck struct {
	At time.Time `json:"at"`
	OK bool      `json:"ok"`
	// Output says why it failed: the check's exit code and the last line it
	// printed, or that it timed out or could not run.
	Output string `json:"output,omitempty"`
}
