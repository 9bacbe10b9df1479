package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/outpost-edge/outpost/internal/deployment"
	"github.com/outpost-edge/outpost/internal/runtime"
)

// Health checks are Docker's HEALTHCHECK, run by the agent through the
// runtime's Exec on every runtime (the docker runtime turns the engine's own
// off), so that they behave the same everywhere: the image's check, with
// createOptions.Healthcheck's fields over it, and Docker's defaults.
const (
	DefaultHealthInterval = 30 * time.Second
	DefaultHealthTimeout  = 30 * time.Second
	DefaultHealthRetries  = 3
)

// healthCheck is the check an instance runs under; nil for none.
type healthCheck struct {
	Args        []string
	Interval    time.Duration
	Timeout     time.Duration
	StartPeriod time.Duration
	Retries     int
}

// healthCheckOf merges the createOptions check over the image's, field by
// field, as Docker does, and fills in Docker's defaults. It returns nil when
// there is no check or it is ["NONE"].
func healthCheckOf(image *v1.HealthConfig, co *deployment.Healthcheck) *healthCheck {
	var hc deployment.Healthcheck
	if image != nil {
		hc = deployment.Healthcheck{Test: image.Test, Interval: image.Interval, Timeout: image.Timeout,
			StartPeriod: image.StartPeriod, Retries: image.Retries}
	}
	if co != nil {
		if len(co.Test) > 0 {
			hc.Test = co.Test
		}
		if co.Interval > 0 {
			hc.Interval = co.Interval
		}
		if co.Timeout > 0 {
			hc.Timeout = co.Timeout
		}
		if co.StartPeriod > 0 {
			hc.StartPeriod = co.StartPeriod
		}
		if co.Retries > 0 {
			hc.Retries = co.Retries
		}
	}
	var args []string
	switch {
	case len(hc.Test) >= 2 && hc.Test[0] == "CMD":
		args = hc.Test[1:]
	case len(hc.Test) == 2 && hc.Test[0] == "CMD-SHELL":
		args = []string{"/bin/sh", "-c", hc.Test[1]}
	default: // none, NONE, or a form the deployment check refused
		return nil
	}
	out := &healthCheck{Args: args, Interval: hc.Interval, Timeout: hc.Timeout, StartPeriod: hc.StartPeriod, Retries: hc.Retries}
	if out.Interval <= 0 {
		out.Interval = DefaultHealthInterval
	}
	if out.Timeout <= 0 {
		out.Timeout = DefaultHealthTimeout
	}
	if out.Retries <= 0 {
		out.Retries = DefaultHealthRetries
	}
	return out
}

// healthEvent is a change of an instance's health.
type healthEvent struct {
	healthy bool
	why     string // unhealthy: how the checks failed
}

// maxHealthOutput bounds the check output quoted in a status description.
const maxHealthOutput = 200

// runHealth runs hc against the instance every Interval until ctx ends, and
// sends a healthEvent each time its health changes: unhealthy after Retries
// failures in a row (failures within StartPeriod of the start do not count,
// unless a check has passed since), healthy again after a check passes.
//
// checked, when not nil, is told the result of each check.
func runHealth(ctx context.Context, rt runtime.Runtime, name string, hc *healthCheck, started time.Time, events chan<- healthEvent, checked func(HealthCheck)) {
	healthy := true
	failures := 0
	starting := hc.StartPeriod > 0
	t := time.NewTimer(hc.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, hc.Timeout)
		res, err := rt.Exec(cctx, name, hc.Args)
		timedOut := cctx.Err() != nil
		cancel()
		if ctx.Err() != nil || errors.Is(err, runtime.ErrNotRunning) || errors.Is(err, runtime.ErrNotFound) {
			return // the instance's exit is reported by its Wait
		}
		var why string
		switch {
		case timedOut:
			why = fmt.Sprintf("the check did not answer within %v", hc.Timeout)
		case err != nil:
			why = "the check could not run: " + err.Error()
		case res.ExitCode != 0:
			why = fmt.Sprintf("the check exited with code %d", res.ExitCode)
			if out := lastLine(res.Output); out != "" {
				why += ": " + out
			}
		}
		if checked != nil {
			checked(HealthCheck{At: time.Now().UTC(), OK: why == "", Output: why})
		}
		var ev *healthEvent
		if why == "" {
			failures, starting = 0, false
			if !healthy {
				healthy = true
				ev = &healthEvent{healthy: true}
			}
		} else if !starting || time.Since(started) >= hc.StartPeriod {
			starting = false
			failures++
			if healthy && failures >= hc.Retries {
				healthy = false
				ev = &healthEvent{why: fmt.Sprintf("%d health checks failed in a row; the last: %s", failures, why)}
			}
		}
		if ev != nil {
			select {
			case events <- *ev:
			case <-ctx.Done():
				return
			}
		}
		t.Reset(hc.Interval)
	}
}

// lastLine returns the last non-empty line of out, cut to maxHealthOutput.
func lastLine(out string) string {
	out = strings.TrimSpace(out)
	if i := strings.LastIndexByte(out, '\n'); i >= 0 {
		out = strings.TrimSpace(out[i+1:])
	}
	if len(out) > maxHealthOutput {
		out = out[:maxHealthOutput] + "…"
	}
	return out
}
