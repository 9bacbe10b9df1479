// Package daemontest runs a daemon assembled by a test (daemon.New) until
// the test ends, logging to the test.
package daemontest

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/daemon"
)

// Logger logs to t, one entry a line.
func Logger(t testing.TB) *slog.Logger { return slog.New(slog.NewTextHandler(logWriter{t}, nil)) }

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Run runs d until stop is called or the test ends, and returns stop: it
// stops d and fails the test when d returns an error or does not stop
// within 60 s. Calling it again does nothing.
func Run(t testing.TB, d *daemon.Daemon) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("daemon: %v", err)
				}
			case <-time.After(60 * time.Second):
				t.Error("the daemon did not stop within 60 s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
