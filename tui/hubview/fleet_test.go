package hubview_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/x/exp/teatest/v2"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/tui/app"
	"github.com/outpost-edge/outpost/tui/hubview"
	"github.com/outpost-edge/outpost/tui/tuitest"
)

// bulkDevices creates devices prefix-00000… in bulk requests of 100 (the hub's limit).
func bulkDevices(t testing.TB, h *hubtest.Hub, prefix string, n int) {
	t.Helper()
	owner, err := identity.ParseConnectionString(h.ConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := owner.Token(time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 100 {
		var items []string
		for j := i; j < min(i+100, n); j++ {
			items = append(items, fmt.Sprintf(`{"id":"%s%05d","importMode":"create"}`, prefix, j))
		}
		if status, body := h.Request(t, "POST", "/devices", auth, "", []byte("["+strings.Join(items, ",")+"]")); status != 200 {
			t.Fatalf("bulk create: %d %s", status, body)
		}
	}
}

// openFleet runs the UI on the fleet at w×h and waits until the screen
// showed every text of want.
func openFleet(t *testing.T, f *fixture, w, h int, want ...string) *teatest.TestModel {
	t.Helper()
	c := tuitest.Common(t)
	m := app.New(c, "hub test-hub:8443", hubview.NewFleet(c, f.c))
	tm := tuitest.Start(t, m, w, h)
	tuitest.WaitFor(t, tm, want...)
	return tm
}

func fleetOf(t *testing.T, tm *teatest.TestModel) (*app.Model, *hubview.Fleet) {
	t.Helper()
	m := tuitest.Final(t, tm).(*app.Model)
	return m, m.Front().(*hubview.Fleet)
}

func TestFleetGolden80x24(t *testing.T) {
	f := newFixture(t)
	bulkDevices(t, f.hub, "dev-", 30)
	tm := openFleet(t, f, 80, 24, "devices (31)", "● connected") // the header's link comes after the rows
	tuitest.Keys(tm, "j", "j")
	m, _ := fleetOf(t, tm)
	tuitest.Golden(t, m.Render())
}

func TestFleetGolden120x40(t *testing.T) {
	f := newFixture(t)
	bulkDevices(t, f.hub, "dev-", 30)
	tm := openFleet(t, f, 120, 40, "devices (31)", "● connected") // the header's link comes after the rows
	m, _ := fleetOf(t, tm)
	tuitest.Golden(t, m.Render())
}

// TestFleetFilterLarge: 1,000 devices (10,000 are measured by
// scripts/bench/tui.sh); / filters them as one types.
func TestFleetFilterLarge(t *testing.T) {
	f := newFixture(t)
	bulkDevices(t, f.hub, "dev-", 1000)
	tm := openFleet(t, f, 80, 24, "devices (1001)")
	tuitest.Keys(tm, "/")
	tm.Type("dev-0099")
	tuitest.WaitFor(t, tm, "devices (10 of 1001)")
	tuitest.Keys(tm, "enter", "G")
	_, fl := fleetOf(t, tm)
	r, ok := fl.Table().Selected()
	if !ok || r.ID != "dev-00999" {
		t.Fatalf("selected %+v after G in the filtered list, want dev-00999", r)
	}
}

// TestFleetLive: a device created while the fleet is open appears, marked;
// a deleted one goes.
func TestFleetLive(t *testing.T) {
	f := newFixture(t)
	bulkDevices(t, f.hub, "dev-", 3)
	tm := openFleet(t, f, 100, 24, "devices (4)")
	bulkDevices(t, f.hub, "new-", 1)
	tuitest.WaitFor(t, tm, "devices (5)", "• new-00000")
	if err := f.c.DeleteDevice(t.Context(), "dev-00001", ""); err != nil {
		t.Fatal(err)
	}
	tuitest.WaitFor(t, tm, "devices (4)")
	_, fl := fleetOf(t, tm)
	var ids []string
	for _, r := range fl.Table().Rows() {
		ids = append(ids, r.ID)
	}
	if got := strings.Join(ids, " "); got != "d1 dev-00000 dev-00002 new-00000" {
		t.Fatalf("rows %s, want d1 dev-00000 dev-00002 new-00000", got)
	}
}

// TestFleetToDeviceToTwin: Enter opens the device, Enter on a module its
// twin; Esc goes back.
func TestFleetToDeviceToTwin(t *testing.T) {
	f := newFixture(t)
	tm := openFleet(t, f, 120, 40, "devices (1)")
	tuitest.Keys(tm, "enter")
	tuitest.WaitFor(t, tm, "m1", "fleet › d1")
	tuitest.Keys(tm, "G", "enter")
	// The status line comes in its own message after the twin: the golden
	// has it, so wait for it before going back.
	tuitest.WaitFor(t, tm, "fleet › d1 › d1/m1", `"interval": 5`, "twin d1/m1: version 2")
	tuitest.Keys(tm, "esc")
	m := tuitest.Final(t, tm).(*app.Model)
	if m.Depth() != 2 {
		t.Fatalf("depth %d after esc, want 2 (the device)", m.Depth())
	}
	tuitest.Golden(t, m.Render())
}

// TestFleetColumnsLive: the module count, the deployment report of the
// device's agent and the connection state come with the fleet's pages and
// follow the hub: an agent's report (which connects the device) shows in
// the open view without a request per device.
func TestFleetColumnsLive(t *testing.T) {
	f := newFixture(t)
	tm := openFleet(t, f, 100, 24, "devices (1)")
	ctx := t.Context()
	d, err := f.c.GetDevice(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	agent, err := f.c.GetTwin(ctx, "d1", "$edgeAgent")
	if err != nil {
		t.Fatal(err)
	}
	dc := f.hub.ClientFor(t, f.hub.DeviceConnectionString("d1", "", d.Authentication.SymmetricKey.PrimaryKey))
	patch := fmt.Sprintf(`{"lastDesiredVersion":%d,"lastDesiredStatus":{"code":200}}`, agent.DesiredVersion())
	if _, err := dc.UploadReported(ctx, "d1", hubapi.ReportedBatch{Session: "tui-test",
		Patches: []hubapi.ReportedPatch{{Seq: 1, ModuleID: "$edgeAgent", Patch: json.RawMessage(patch)}}}); err != nil {
		t.Fatal(err)
	}
	tuitest.WaitFor(t, tm, "ok         yes")
	_, fl := fleetOf(t, tm)
	rows := fl.Table().Rows()
	if len(rows) != 1 {
		t.Fatalf("%d rows, want d1's", len(rows))
	}
	if got := strings.Join(rows[0].Cells[2:], "|"); !strings.HasPrefix(got, "connected|") || !strings.HasSuffix(got, "|3|ok|yes") {
		t.Fatalf("d1's row after its agent reported: %s, want connected, 3 modules, ok", got)
	}
}

// TestFleetLeafDeviceTwin: Enter on a device that is not an IoT Edge
// device opens its own twin, which follows the hub: a desired patch made
// elsewhere shows.
func TestFleetLeafDeviceTwin(t *testing.T) {
	f := newFixture(t)
	bulkDevices(t, f.hub, "dev-", 1)
	ctx := t.Context()
	if _, err := f.c.PatchTwin(ctx, "dev-00000", "", []byte(`{"properties":{"desired":{"leafKey":1}}}`), ""); err != nil {
		t.Fatal(err)
	}
	tm := openFleet(t, f, 120, 40, "devices (2)")
	tuitest.Keys(tm, "j", "enter")
	tuitest.WaitFor(t, tm, "fleet › dev-00000 twin", `"leafKey": 1`)
	if _, err := f.c.PatchTwin(ctx, "dev-00000", "", []byte(`{"properties":{"desired":{"leafKey":2}}}`), ""); err != nil {
		t.Fatal(err)
	}
	tuitest.WaitFor(t, tm, `"leafKey": 2`)
	m := tuitest.Final(t, tm).(*app.Model)
	if tw, ok := m.Front().(*hubview.Twin); !ok || tw.Title() != "dev-00000 twin" {
		t.Fatalf("front view %T, want dev-00000's twin", m.Front())
	}
}
