package moduleclient_test

import (
	"context"
	"log"
	"os/signal"
	"syscall"
	"time"

	"github.com/outpost-edge/outpost/sdk/moduleclient"
)

// A module the outpost daemon runs: it reads its twin, follows the desired
// "interval" and reports what it does. It keeps working while the hub is
// unreachable: the daemon answers from the twins it keeps and sends the
// reports once the hub is back.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()

	c, err := moduleclient.NewFromEnvironment(ctx)
	if err != nil {
		log.Fatal(err) // not run by the daemon, or the daemon refused: the error says which
	}
	defer c.Close()

	intervals := make(chan float64, 16)
	c.OnDesired(func(patch map[string]any, version int64) {
		if v, ok := patch["interval"].(float64); ok && v > 0 {
			intervals <- v
		}
	})
	tw, err := c.Twin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	interval := 5.0
	if v, ok := tw.Desired.Values["interval"].(float64); ok && v > 0 {
		interval = v
	}
	for {
		if _, err := c.UpdateReported(ctx, map[string]any{"interval": interval}); err != nil {
			log.Print(err) // a *moduleclient.Error when the daemon refused the patch
		}
		select {
		case <-ctx.Done():
			return
		case interval = <-intervals:
		case <-time.After(time.Duration(interval * float64(time.Second))):
		}
	}
}
