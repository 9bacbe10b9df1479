package hub_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
)

func fleetDevice(t *testing.T, c *hubclient.Client, id string) hubapi.FleetDevice {
	t.Helper()
	ds, err := c.FleetDevices(ctx, []string{id})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].DeviceID != id {
		t.Fatalf("fleet devices %v: %+v, want %s", []string{id}, ds, id)
	}
	return ds[0]
}

// reportDeployment uploads $edgeAgent's reported lastDesiredVersion and
// lastDesiredStatus as the device's agent does.
func reportDeployment(t *testing.T, dc *hubclient.Client, id string, seq, version int64, code int) {
	t.Helper()
	patch := fmt.Sprintf(`{"lastDesiredVersion":%d,"lastDesiredStatus":{"code":%d,"description":"seq %d"}}`, version, code, seq)
	ack, err := dc.UploadReported(ctx, id, hubapi.ReportedBatch{Session: "fleet-test", Patches: []hubapi.ReportedPatch{
		{Seq: seq, ModuleID: "$edgeAgent", Patch: json.RawMessage(patch)}}})
	if err != nil || ack.Acked != seq || len(ack.Rejected) != 0 {
		t.Fatalf("report deployment: %+v %v", ack, err)
	}
}

// TestFleetSummary: GET /outpost/v1/fleet gives each device's module count
// and its agent's deployment report (none, ok, pending after a new
// deployment, failed), by page or by ids (unknown ones left out).
func TestFleetSummary(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)
	dc := device(t, h, "e1", "m1", "m2")
	device(t, h, "e2")
	mods, err := c.ListModules(ctx, "e1")
	if err != nil {
		t.Fatal(err)
	}
	d := fleetDevice(t, c, "e1")
	if d.ModuleCount != len(mods) || d.ModuleCount < 2 || d.Deployment != nil || d.Status != "enabled" {
		t.Fatalf("e1 before a report: %d modules (want %d), deployment %+v, status %q", d.ModuleCount, len(mods), d.Deployment, d.Status)
	}
	agent, err := c.GetTwin(ctx, "e1", "$edgeAgent")
	if err != nil {
		t.Fatal(err)
	}
	v := agent.DesiredVersion()
	reportDeployment(t, dc, "e1", 1, v, 200)
	if d := fleetDevice(t, c, "e1"); d.Deployment == nil || d.Deployment.Status() != "ok" || d.Deployment.DesiredVersion != v || d.Deployment.Description != "seq 1" {
		t.Fatalf("e1 after an ok report of v%d: %+v", v, d.Deployment)
	}
	if _, err := c.PatchTwin(ctx, "e1", "$edgeAgent", []byte(`{"properties":{"desired":{"fleetTest":1}}}`), ""); err != nil {
		t.Fatal(err)
	}
	if d := fleetDevice(t, c, "e1"); d.Deployment == nil || d.Deployment.Status() != "pending" || d.Deployment.DesiredVersion != v+1 {
		t.Fatalf("e1 after a new deployment: %+v, want pending v%d", d.Deployment, v+1)
	}
	reportDeployment(t, dc, "e1", 2, v+1, 400)
	if d := fleetDevice(t, c, "e1"); d.Deployment == nil || d.Deployment.Status() != "failed" || d.Deployment.Code != 400 {
		t.Fatalf("e1 after a failed report: %+v", d.Deployment)
	}

	ds, err := c.FleetDevices(ctx, []string{"e2", "nobody", "e1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 || ds[0].DeviceID != "e2" || ds[1].DeviceID != "e1" {
		t.Fatalf("fleet devices e2, nobody, e1: %+v, want e2 and e1", ds)
	}
	// The hub takes 1,000 ids at most; the client asks in chunks.
	ids := make([]string, 1001)
	for i := range ids {
		ids[i] = fmt.Sprintf("nobody-%d", i)
	}
	if status, body := h.Request(t, "GET", hubapi.FleetPath+"?id="+strings.Join(ids, "&id="), ownerAuth(t, h), "", nil); status != 400 || !strings.Contains(body, "at most 1000") {
		t.Fatalf("1001 ids: %d %s, want 400 naming the limit", status, body)
	}
	ids[1000] = "e1"
	if ds, err := c.FleetDevices(ctx, ids); err != nil || len(ds) != 1 || ds[0].DeviceID != "e1" {
		t.Fatalf("1001 ids through the client: %+v %v, want e1", ds, err)
	}
}

// TestFleetPages: the fleet pages as GET /devices does, and each page says
// the change stream's cursor from before it was read: following from it
// names a device created after the page, with no reset.
func TestFleetPages(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)
	for _, id := range []string{"a", "b", "c"} {
		device(t, h, id)
	}
	p, err := c.ListFleetPage(ctx, "", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Devices) != 2 || p.Devices[0].DeviceID != "a" || p.Devices[1].DeviceID != "b" || p.Next == "" || p.Cursor == "" {
		t.Fatalf("first page: %+v", p)
	}
	p2, err := c.ListFleetPage(ctx, p.Next, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(p2.Devices) != 1 || p2.Devices[0].DeviceID != "c" || p2.Next != "" {
		t.Fatalf("second page: %+v", p2)
	}
	device(t, h, "d")
	ch, err := c.Changes(ctx, p.Cursor, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Reset || !slices.Contains(ch.Devices, "d") {
		t.Fatalf("changes from the first page's cursor: %+v, want d without a reset", ch)
	}
	if _, _, err := c.ListDevicesPage(ctx, "", 0); err == nil {
		t.Fatal("top=0: no error")
	}
}

// TestFleetConnectionLive: a device's connection state is on the change
// stream: it is named when it connects (a sync) and again when it is gone
// (the presence grace after its last request).
func TestFleetConnectionLive(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{PresenceGrace: 200 * time.Millisecond})
	c := h.Client(t)
	dc := device(t, h, "e1")
	first, err := c.Changes(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dc.Sync(ctx, "e1", "", 0); err != nil {
		t.Fatal(err)
	}
	// waitState follows the stream from cursor until it names e1 with its
	// connection state as want (the fleet is read after each naming), and
	// returns the cursor after it.
	deadline := time.Now().Add(30 * time.Second)
	waitState := func(cursor, want string) string {
		t.Helper()
		for time.Now().Before(deadline) {
			ch, err := c.Changes(ctx, cursor, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if ch.Reset {
				t.Fatalf("changes from %s: a reset", cursor)
			}
			cursor = ch.Cursor
			if slices.Contains(ch.Devices, "e1") && fleetDevice(t, c, "e1").ConnectionState == want {
				return cursor
			}
		}
		t.Fatalf("the change stream never named e1 %s (30 s)", want)
		return ""
	}
	next := waitState(first.Cursor, "Connected")
	waitState(next, "Disconnected")
}
