package hub_test

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/registry/registrytest"
	"github.com/outpost-edge/outpost/internal/store"
)

// TestSystemModuleNames checks IoT Edge's names: every device has $edgeAgent
// and $edgeHub, reserved; $agent, the old name, is read as $edgeAgent in a
// path and never written back.
func TestSystemModuleNames(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)
	if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "d"}); err != nil {
		t.Fatal(err)
	}
	mods, err := c.ListModules(ctx, "d")
	if err != nil {
		t.Fatal(err)
	}
	if len(mods) != 2 || mods[0].ModuleID != "$edgeAgent" || mods[1].ModuleID != "$edgeHub" || mods[1].ManagedBy != "outpost" {
		t.Fatalf("a new device's modules: %+v", mods)
	}
	auth := ownerAuth(t, h)
	for _, tc := range []struct{ method, path, want string }{
		{"PUT", "/devices/d/modules/$edgeHub", `module id "$edgeHub": ids starting with '$' are reserved`},
		{"DELETE", "/devices/d/modules/$edgeHub", `module id "$edgeHub": ids starting with '$' are reserved`},
		{"PUT", "/devices/d/modules/$agent", `module id "$edgeAgent": ids starting with '$' are reserved`},
	} {
		status, body := raw(t, h, tc.method, tc.path, auth, []byte(`{}`))
		expectError(t, status, body, 400, tc.want)
	}
	// The old name reads and writes the agent's twin, answered with the new name.
	status, body := raw(t, h, "PATCH", "/twins/d/modules/$agent", auth, []byte(`{"tags":{"site":"a"}}`))
	if status != 200 || !strings.Contains(body, `"moduleId":"$edgeAgent"`) || strings.Contains(body, "$agent") {
		t.Fatalf("PATCH /twins/d/modules/$agent: %d %s", status, body)
	}
	for _, path := range []string{"/twins/d/modules/$agent", "/devices/d/modules/$agent"} {
		status, body := raw(t, h, "GET", path, auth, nil)
		if status != 200 || !strings.Contains(body, `"moduleId":"$edgeAgent"`) || strings.Contains(body, "$agent") {
			t.Errorf("GET %s: %d %s", path, status, body)
		}
	}
	tw, err := c.GetTwin(ctx, "d", "$edgeAgent")
	if err != nil || tw.TagsJSON() == nil || !strings.Contains(string(tw.TagsJSON()), `"site":"a"`) {
		t.Errorf("the patch through $agent did not reach $edgeAgent: %v", err)
	}
}

// TestDeploymentFillsSystemTwins applies a deployment shaped like IoT Edge's
// e2e ones: $edgeAgent's desired is the deployment with its schemaVersion
// and systemModules as given, $edgeHub's the routes in both forms.
func TestDeploymentFillsSystemTwins(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)
	if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "edge-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ApplyConfiguration(ctx, "edge-1", fixture(t, "iotedge-e2e-routes.json")); err != nil {
		t.Fatal(err)
	}
	agent, err := c.GetTwin(ctx, "edge-1", "$edgeAgent")
	if err != nil {
		t.Fatal(err)
	}
	var ad struct {
		SchemaVersion string
		SystemModules map[string]json.RawMessage
		Modules       map[string]json.RawMessage
	}
	if err := json.Unmarshal(agent.DesiredJSON(), &ad); err != nil {
		t.Fatal(err)
	}
	if ad.SchemaVersion != "1.0" || len(ad.SystemModules) != 2 || len(ad.Modules) != 2 {
		t.Errorf("$edgeAgent desired: %s", agent.DesiredJSON())
	}
	hub, err := c.GetTwin(ctx, "edge-1", "$edgeHub")
	if err != nil {
		t.Fatal(err)
	}
	var hd struct {
		SchemaVersion                string
		Routes                       map[string]any
		StoreAndForwardConfiguration struct{ TimeToLiveSecs int }
	}
	if err := json.Unmarshal(hub.DesiredJSON(), &hd); err != nil {
		t.Fatal(err)
	}
	obj, _ := hd.Routes["TempSensorToTempFilter"].(map[string]any)
	if hd.SchemaVersion != "1.2" || hd.StoreAndForwardConfiguration.TimeToLiveSecs != 7200 || obj["priority"] != 0.0 || obj["timeToLiveSecs"] != 86400.0 ||
		!strings.HasPrefix(hd.Routes["TempFilterFunctionsToCloud"].(string), "FROM /messages/modules/filterFunction") {
		t.Errorf("$edgeHub desired: %s", hub.DesiredJSON())
	}
	// A native manifest: the $edgeHub part IoT Edge's tools expect, with no routes.
	if _, err := c.ApplyConfiguration(ctx, "edge-1", []byte(`{"schemaVersion":"1.0","modules":{"m":{"image":"busybox"}}}`)); err != nil {
		t.Fatal(err)
	}
	if hub, err = c.GetTwin(ctx, "edge-1", "$edgeHub"); err != nil || string(hub.DesiredJSON()) != `{"routes":{},"schemaVersion":"1.1","storeAndForwardConfiguration":{"timeToLiveSecs":7200}}` {
		t.Errorf("$edgeHub desired after a native manifest: %s (%v)", hub.DesiredJSON(), err)
	}
	mods, _ := c.ListModules(ctx, "edge-1")
	if len(mods) < 2 || mods[0].ModuleID != "$edgeAgent" || mods[1].ModuleID != "$edgeHub" {
		t.Errorf("modules: %+v", mods)
	}
}

// TestHubMigratesOldDataDir starts a hub on a data dir written in the layout
// of releases before IoT Edge's names.
func TestHubMigratesOldDataDir(t *testing.T) {
	hubtest.FileStoreOnly(t)
	dir := t.TempDir()
	h := hubtest.Start(t, hubtest.Options{DataDir: dir})
	c := h.Client(t)
	dev, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: "edge-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ApplyConfiguration(ctx, "edge-1", fixture(t, "iotedge-quickstart.json")); err != nil {
		t.Fatal(err)
	}
	before, err := c.GetModule(ctx, "edge-1", "$edgeAgent")
	if err != nil {
		t.Fatal(err)
	}
	beforeTwin, _ := c.GetTwin(ctx, "edge-1", "$edgeAgent")
	h.Stop()
	st, err := store.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	registrytest.ToOldLayout(t, st, "edge-1")
	if _, err := st.Get("modules/edge-1/$agent"); err != nil {
		t.Fatalf("old layout: %v", err)
	}
	st.Close()

	h = hubtest.Start(t, hubtest.Options{DataDir: dir})
	c = h.Client(t)
	after, err := c.GetModule(ctx, "edge-1", "$edgeAgent")
	if err != nil {
		t.Fatal(err)
	}
	if after.GenerationID != before.GenerationID || !reflect.DeepEqual(after.Authentication, before.Authentication) {
		t.Errorf("$edgeAgent after migration %+v, want %+v", after, before)
	}
	tw, err := c.GetTwin(ctx, "edge-1", "$edgeAgent")
	if err != nil || string(tw.DesiredJSON()) != string(beforeTwin.DesiredJSON()) || tw.ETag != beforeTwin.ETag {
		t.Errorf("$edgeAgent twin after migration: %s (%v)", tw.DesiredJSON(), err)
	}
	if hub, err := c.GetTwin(ctx, "edge-1", "$edgeHub"); err != nil || !strings.Contains(string(hub.DesiredJSON()), `"schemaVersion":"1.1"`) {
		t.Errorf("$edgeHub after migration: %v", err)
	}
	// The device syncs the new names.
	devc := h.ClientFor(t, h.DeviceConnectionString("edge-1", "", dev.Authentication.SymmetricKey.PrimaryKey))
	s, err := devc.Sync(ctx, "edge-1", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range s.Modules {
		ids = append(ids, m.ModuleID)
	}
	if strings.Join(ids, ",") != "$edgeAgent,$edgeHub,SimulatedTemperatureSensor" {
		t.Errorf("synced modules %v", ids)
	}
	// A patch an older daemon queued for $agent lands in $edgeAgent.
	ack, err := devc.UploadReported(ctx, "edge-1", hubapi.ReportedBatch{Session: "old-daemon", Patches: []hubapi.ReportedPatch{{Seq: 1, ModuleID: "$agent", Patch: json.RawMessage(`{"lastDesiredVersion":1}`)}}})
	if err != nil || len(ack.Rejected) != 0 {
		t.Fatalf("upload for $agent: %+v %v", ack, err)
	}
	if tw, err := c.GetTwin(ctx, "edge-1", "$edgeAgent"); err != nil || !strings.Contains(string(tw.ReportedJSON()), `"lastDesiredVersion":1`) {
		t.Errorf("$edgeAgent reported: %s (%v)", tw.ReportedJSON(), err)
	}
}
