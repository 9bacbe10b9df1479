package hubclient_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/errdefs"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
)

// next returns the next event; a watch that says nothing for a long time
// is stuck (this is a timeout against hangs, not a measure of speed).
func next(t *testing.T, events <-chan hubclient.TwinEvent) hubclient.TwinEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("the watch ended")
		}
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("no event from the watch")
	}
	return hubclient.TwinEvent{}
}

func setup(t *testing.T, h *hubtest.Hub, device string, modules ...string) {
	t.Helper()
	ctx := context.Background()
	c := h.Client(t)
	if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: device}); err != nil {
		t.Fatal(err)
	}
	for _, m := range modules {
		if _, err := c.CreateModule(ctx, hubapi.Module{DeviceID: device, ModuleID: m}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWatchTwinSurvivesRestart: the initial twin, a desired patch, then the
// hub stops (link down, retries) and comes back on the same address and
// data dir (link up), and a change made there reaches the same watch.
func TestWatchTwinSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	h := hubtest.Start(t, hubtest.Options{DataDir: dir})
	setup(t, h, "d1", "m1", "m2")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := h.Client(t).WatchTwin(ctx, "d1", "m1", hubclient.WithBackoff(10*time.Millisecond, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ev := next(t, events)
	if ev.Kind != hubclient.TwinInitial || ev.Twin.ModuleID != "m1" || ev.Twin.Version != 1 {
		t.Fatalf("first event %v %+v, want the initial twin at version 1", ev.Kind, ev.Twin)
	}

	c := h.Client(t)
	// Another module's change is no event of m1's.
	if _, err := c.PatchTwin(ctx, "d1", "m2", []byte(`{"properties":{"desired":{"other":1}}}`), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PatchTwin(ctx, "d1", "m1", []byte(`{"properties":{"desired":{"interval":5}}}`), ""); err != nil {
		t.Fatal(err)
	}
	ev = next(t, events)
	if ev.Kind != hubclient.TwinChanged || ev.Prev.Version != 1 || ev.Twin.Version != 2 || string(ev.Twin.DesiredJSON()) != `{"interval":5}` {
		t.Fatalf("after a desired patch: %v, twin %+v", ev.Kind, ev.Twin)
	}

	addr := h.Addr().String()
	h.Stop()
	ev = next(t, events)
	if ev.Kind != hubclient.LinkDown || !errors.Is(ev.Err, errdefs.ErrUnavailable) || ev.Retry <= 0 {
		t.Fatalf("hub stopped: %v %v (retry %v), want link down, unavailable", ev.Kind, ev.Err, ev.Retry)
	}

	h2 := hubtest.Start(t, hubtest.Options{DataDir: dir, Listen: addr})
	if _, err := h2.Client(t).PatchTwin(ctx, "d1", "m1", []byte(`{"properties":{"desired":{"interval":7}}}`), ""); err != nil {
		t.Fatal(err)
	}
	downs := 1
	for ev = next(t, events); ev.Kind == hubclient.LinkDown; ev = next(t, events) {
		downs++
	}
	if ev.Kind != hubclient.LinkUp {
		t.Fatalf("after %d link down events: %v %v, want link up", downs, ev.Kind, ev.Err)
	}
	ev = next(t, events)
	if ev.Kind != hubclient.TwinChanged || ev.Prev.Version != 2 || ev.Twin.Version != 3 || string(ev.Twin.DesiredJSON()) != `{"interval":7}` {
		t.Fatalf("after the restart: %v, twin %+v", ev.Kind, ev.Twin)
	}

	// The restarted hub's long-poll still brings changes.
	if _, err := h2.Client(t).PatchTwin(ctx, "d1", "m1", []byte(`{"tags":{"site":"north"}}`), ""); err != nil {
		t.Fatal(err)
	}
	ev = next(t, events)
	if ev.Kind != hubclient.TwinChanged || ev.Twin.Version != 4 || string(ev.Twin.TagsJSON()) != `{"site":"north"}` {
		t.Fatalf("a tag change: %v, twin %+v", ev.Kind, ev.Twin)
	}

	cancel()
	for range events { // it closes
	}
}

// TestWatchTwinEnds: what is not there, or goes away, ends the watch.
func TestWatchTwinEnds(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	setup(t, h, "d1", "m1")
	ctx := context.Background()
	c := h.Client(t)

	for _, tc := range []struct{ device, module string }{{"nope", "m1"}, {"d1", "nope"}} {
		events, err := c.WatchTwin(ctx, tc.device, tc.module)
		if err != nil {
			t.Fatal(err)
		}
		ev := next(t, events)
		var gone *hubclient.ModuleNotFoundError
		if ev.Kind != hubclient.WatchEnded || !errors.Is(ev.Err, hubclient.ErrNotFound) || (tc.module == "nope") != errors.As(ev.Err, &gone) {
			t.Errorf("watch %s/%s: %v %v, want it ended, not found", tc.device, tc.module, ev.Kind, ev.Err)
		}
		if _, ok := <-events; ok {
			t.Errorf("watch %s/%s: the channel stays open after the end", tc.device, tc.module)
		}
	}

	events, err := c.WatchTwin(ctx, "d1", "m1")
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, events); ev.Kind != hubclient.TwinInitial {
		t.Fatalf("first event %v", ev.Kind)
	}
	if err := c.DeleteModule(ctx, "d1", "m1", ""); err != nil {
		t.Fatal(err)
	}
	ev := next(t, events)
	var gone *hubclient.ModuleNotFoundError
	if ev.Kind != hubclient.WatchEnded || !errors.As(ev.Err, &gone) || !gone.Deleted || ev.Err.Error() != "module d1/m1 was deleted" {
		t.Errorf("module deleted: %v %v", ev.Kind, ev.Err)
	}

	// (With no module, WatchTwin follows the device's own twin:
	// TestWatchDeviceTwin.)
	if _, err := c.WatchTwin(ctx, "", "m1"); err == nil {
		t.Error("a watch without a device id started")
	}
}

// TestWatchTwinStartsOffline: a watch opened while the hub is down reports
// the link down, then the initial twin once the hub is back.
func TestWatchTwinStartsOffline(t *testing.T) {
	dir := t.TempDir()
	h := hubtest.Start(t, hubtest.Options{DataDir: dir})
	setup(t, h, "d1", "m1")
	c, addr := h.Client(t), h.Addr().String()
	h.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := c.WatchTwin(ctx, "d1", "m1", hubclient.WithBackoff(10*time.Millisecond, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ev := next(t, events)
	if ev.Kind != hubclient.LinkDown || !errors.Is(ev.Err, errdefs.ErrUnavailable) {
		t.Fatalf("first event with the hub down: %v %v, want link down", ev.Kind, ev.Err)
	}
	hubtest.Start(t, hubtest.Options{DataDir: dir, Listen: addr})
	for ev.Kind == hubclient.LinkDown {
		ev = next(t, events)
	}
	if ev.Kind != hubclient.LinkUp {
		t.Fatalf("hub back: %v %v, want link up", ev.Kind, ev.Err)
	}
	if ev = next(t, events); ev.Kind != hubclient.TwinInitial || ev.Twin.ModuleID != "m1" {
		t.Fatalf("after link up: %v, want the initial twin", ev.Kind)
	}
}
