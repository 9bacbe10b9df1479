package hubclient_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/errdefs"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
)

func nextChange(t *testing.T, events <-chan hubclient.ChangeEvent) hubclient.ChangeEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("the watch ended")
		}
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("no event from the change watch")
	}
	return hubclient.ChangeEvent{}
}

// waitDevices reads changes until every one of want was named.
func waitDevices(t *testing.T, events <-chan hubclient.ChangeEvent, want ...string) {
	t.Helper()
	seen := map[string]bool{}
	for {
		ev := nextChange(t, events)
		if ev.Kind != hubclient.TwinChanged {
			t.Fatalf("event %v (%v), want changes of %v", ev.Kind, ev.Err, want)
		}
		for _, d := range ev.Devices {
			seen[d] = true
		}
		if !slices.ContainsFunc(want, func(d string) bool { return !seen[d] }) {
			return
		}
	}
}

// TestWatchChanges: the first event is a reset; creating a device, adding
// a module and patching a twin each name their device; after the hub
// restarts the watch says link down, link up and reset.
func TestWatchChanges(t *testing.T) {
	dir := t.TempDir()
	h := hubtest.Start(t, hubtest.Options{DataDir: dir})
	c := h.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := c.WatchChanges(ctx, hubclient.WithBackoff(10*time.Millisecond, 200*time.Millisecond))
	if ev := nextChange(t, events); ev.Kind != hubclient.TwinChanged || !ev.Reset {
		t.Fatalf("first event %+v, want a reset", ev)
	}
	setup(t, h, "d1", "m1")
	waitDevices(t, events, "d1")
	setup(t, h, "d2")
	waitDevices(t, events, "d2")
	if _, err := c.PatchTwin(ctx, "d1", "m1", []byte(`{"properties":{"desired":{"x":1}}}`), ""); err != nil {
		t.Fatal(err)
	}
	waitDevices(t, events, "d1")

	addr := h.Addr().String()
	h.Stop()
	if ev := nextChange(t, events); ev.Kind != hubclient.LinkDown || !errors.Is(ev.Err, errdefs.ErrUnavailable) {
		t.Fatalf("after the hub stopped: %+v, want link down (unavailable)", ev)
	}
	hubtest.Start(t, hubtest.Options{DataDir: dir, Listen: addr})
	for {
		ev := nextChange(t, events)
		if ev.Kind == hubclient.LinkDown {
			continue
		}
		if ev.Kind != hubclient.LinkUp {
			t.Fatalf("after the restart: %+v, want link up", ev)
		}
		break
	}
	if ev := nextChange(t, events); !ev.Reset {
		t.Fatalf("after the restart: %+v, want a reset (the hub's memory of changes is gone)", ev)
	}
}

// TestChangesNeedsRegistryRead: a device's own credentials do not see the
// fleet's changes; a cursor the hub did not make is a reset.
func TestChangesNeedsRegistryRead(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	setup(t, h, "d1")
	dev, err := h.Client(t).GetDevice(context.Background(), "d1")
	if err != nil {
		t.Fatal(err)
	}
	dc := h.ClientFor(t, h.DeviceConnectionString("d1", "", dev.Authentication.SymmetricKey.PrimaryKey))
	_, err = dc.Changes(context.Background(), "", 0)
	var he *hubclient.Error
	if !errors.As(err, &he) || he.StatusCode != 401 && he.StatusCode != 403 {
		t.Fatalf("changes with a device's credentials: %v, want 401/403", err)
	}
	if code, _ := h.Request(t, "GET", hubapi.ChangesPath, "", "", nil); code != 401 {
		t.Fatalf("changes without credentials: %d, want 401", code)
	}
	ans, err := h.Client(t).Changes(context.Background(), "bogus.1", 0)
	if err != nil || !ans.Reset || ans.Cursor == "" {
		t.Fatalf("a foreign cursor: %+v, %v; want a reset with a cursor", ans, err)
	}
}

// TestWatchDeviceTwin: WatchTwin with no module follows the device's own
// twin through the change stream: the twin, then each change of it (not
// the changes of its modules' twins), then WatchEnded (not found) once
// the device is deleted.
func TestWatchDeviceTwin(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)
	setup(t, h, "d1", "m1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := c.WatchTwin(ctx, "d1", "", hubclient.WithBackoff(10*time.Millisecond, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	first := next(t, events)
	if first.Kind != hubclient.TwinInitial || first.Twin.DeviceID != "d1" || first.Twin.ModuleID != "" {
		t.Fatalf("first event %+v, want d1's twin", first)
	}
	if _, err := c.PatchTwin(ctx, "d1", "m1", []byte(`{"properties":{"desired":{"module":1}}}`), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PatchTwin(ctx, "d1", "", []byte(`{"properties":{"desired":{"device":1}}}`), ""); err != nil {
		t.Fatal(err)
	}
	ev := next(t, events)
	if ev.Kind != hubclient.TwinChanged || ev.Prev.Version != first.Twin.Version || !strings.Contains(string(ev.Twin.DesiredJSON()), `"device":1`) {
		t.Fatalf("after a patch of the device twin: %+v, want the change from version %d", ev, first.Twin.Version)
	}
	if err := c.DeleteDevice(ctx, "d1", ""); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, events); ev.Kind != hubclient.WatchEnded || !errors.Is(ev.Err, errdefs.ErrNotFound) {
		t.Fatalf("after the device was deleted: %+v, want WatchEnded (not found)", ev)
	}
}
