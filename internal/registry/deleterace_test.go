package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/deployment"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/store/storetest"
	"github.com/outpost-edge/outpost/internal/twin"
)

// newRaceRegistry is a registry whose store runs race before the first
// write of key once arm is called (storetest.Race).
func newRaceRegistry(t *testing.T) (r *Registry, arm func(key string, race func())) {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rs := &storetest.Race{Store: st}
	return New(rs), rs.Arm
}

// noRecords fails unless no record's key starts with any of prefixes.
func noRecords(t *testing.T, r *Registry, prefixes ...string) {
	t.Helper()
	for _, p := range prefixes {
		recs, err := r.st.List(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			t.Errorf("%s is left behind: %s", rec.Key, rec.Value)
		}
	}
}

// TestWritesRacingDeletesLeaveNothing: a write that read a device or module
// and then lost the race to its delete writes nothing, rather than leaving a
// twin, a module or a configuration state that nothing deletes.
func TestWritesRacingDeletesLeaveNothing(t *testing.T) {
	deleteModule := func(t *testing.T, r *Registry) func() {
		return func() {
			if err := r.DeleteModule("d", "m", ""); err != nil {
				t.Errorf("delete the module: %v", err)
			}
		}
	}
	deleteDevice := func(t *testing.T, r *Registry) func() {
		return func() {
			if err := r.DeleteDevice("d", ""); err != nil {
				t.Errorf("delete the device: %v", err)
			}
		}
	}
	device := func(t *testing.T, r *Registry, edge bool) {
		t.Helper()
		if _, err := r.CreateDevice(Device{DeviceID: "d", Capabilities: &Capabilities{IoTEdge: edge}}); err != nil {
			t.Fatal(err)
		}
	}
	module := func(t *testing.T, r *Registry) {
		t.Helper()
		if _, err := r.CreateModule(Module{DeviceID: "d", ModuleID: "m"}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("first twin write, module deleted", func(t *testing.T) {
		r, arm := newRaceRegistry(t)
		device(t, r, false)
		module(t, r)
		arm(twinKey("d", "m"), deleteModule(t, r))
		_, err := r.UpdateTwin("d", "m", "", func(tw *twin.Twin) (bool, error) {
			return tw.ReplaceTags([]byte(`{"a":1}`), time.Now())
		})
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("twin patch racing the module's delete: %v, want not found", err)
		}
		noRecords(t, r, "twins/d/", "modules/d/")
	})

	t.Run("reported patch ops, module deleted", func(t *testing.T) {
		r, _ := newRaceRegistry(t)
		device(t, r, false)
		module(t, r)
		tw, v, err := r.LoadTwin("d", "m")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tw.PatchReported([]byte(`{"x":1}`), time.Now()); err != nil {
			t.Fatal(err)
		}
		ops, err := r.TwinOps(tw, v)
		if err != nil {
			t.Fatal(err)
		}
		deleteModule(t, r)()
		if _, err := r.st.Txn(ops...); !errors.Is(err, store.ErrConflict) {
			t.Errorf("Txn of the twin's ops after its module's delete: %v, want a conflict", err)
		}
		if _, err := r.TwinOps(tw, v); !errors.Is(err, ErrNotFound) {
			t.Errorf("TwinOps for a deleted module: %v, want not found", err)
		}
		noRecords(t, r, "twins/d/")
	})

	t.Run("module created, device deleted", func(t *testing.T) {
		r, arm := newRaceRegistry(t)
		device(t, r, false)
		arm(moduleKey("d", "m"), deleteDevice(t, r))
		if _, err := r.CreateModule(Module{DeviceID: "d", ModuleID: "m"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("module create racing the device's delete: %v, want not found", err)
		}
		noRecords(t, r, "modules/d/", "devices/d")
	})

	t.Run("device deleted, module created after the delete listed modules", func(t *testing.T) {
		r, arm := newRaceRegistry(t)
		device(t, r, false)
		module(t, r)
		arm(deviceKey("d"), func() {
			if _, err := r.CreateModule(Module{DeviceID: "d", ModuleID: "late"}); err != nil {
				t.Errorf("create a module as the device is deleted: %v", err)
			}
			if _, err := r.UpdateTwin("d", "late", "", func(tw *twin.Twin) (bool, error) {
				return tw.ReplaceTags([]byte(`{"a":1}`), time.Now())
			}); err != nil {
				t.Errorf("write its twin: %v", err)
			}
		})
		if err := r.DeleteDevice("d", ""); err != nil {
			t.Fatal(err)
		}
		noRecords(t, r, "modules/d/", "twins/d", "devices/d")
	})

	t.Run("deployment, device deleted", func(t *testing.T) {
		r, arm := newRaceRegistry(t)
		device(t, r, true)
		m, _, err := deployment.Parse([]byte("schemaVersion: '1.0'\nmodules:\n  web: {image: busybox, desired: {a: 1}}\n"), "d.yaml")
		if err != nil {
			t.Fatal(err)
		}
		arm(moduleKey("d", "web"), deleteDevice(t, r))
		if err := r.ApplyDeployment("d", m); !errors.Is(err, ErrNotFound) {
			t.Errorf("deployment racing the device's delete: %v, want not found", err)
		}
		noRecords(t, r, "modules/d/", "twins/d", "devices/d")
	})

	t.Run("module configuration, module deleted", func(t *testing.T) {
		r, arm := newRaceRegistry(t)
		device(t, r, false)
		module(t, r)
		mustCreateConfig(t, r, Configuration{ID: "mc", Priority: 1, TargetCondition: "FROM devices.modules WHERE moduleId = 'm'",
			Content: hubapi.ConfigurationContent{ModuleContent: json.RawMessage(`{"properties.desired": {"x": 1}}`)}})
		a := r.NewAutoDeployer(nil)
		a.loadAll(t)
		arm(moduleStateKey("d", "m"), deleteModule(t, r))
		if err := a.EvaluateModule("d", "m"); !errors.Is(err, ErrNotFound) {
			t.Errorf("evaluation racing the module's delete: %v, want not found", err)
		}
		noRecords(t, r, "twins/d/", "modules/d/", moduleStatePrefix+"d/")
	})

	t.Run("device configuration, device deleted", func(t *testing.T) {
		r, arm := newRaceRegistry(t)
		device(t, r, false)
		mustCreateConfig(t, r, Configuration{ID: "dc", Priority: 1, TargetCondition: "deviceId = 'd'",
			Content: hubapi.ConfigurationContent{DeviceContent: json.RawMessage(`{"properties.desired.x": 1}`)}})
		a := r.NewAutoDeployer(nil)
		a.loadAll(t)
		arm(deployStateKey("d"), deleteDevice(t, r))
		if err := a.Evaluate("d"); !errors.Is(err, ErrNotFound) {
			t.Errorf("evaluation racing the device's delete: %v, want not found", err)
		}
		noRecords(t, r, "twins/d", "devices/d", deployStateKey("d"))
	})
}

// TestDeleteDeviceInParts: on a store that takes few ops in one Txn (etcd's
// --max-txn-ops), an edge device with more children and modules than fit is
// deleted in parts: its children lose their parent, and nothing of it stays.
func TestDeleteDeviceInParts(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := New(&storetest.Limited{Store: st, N: 16})
	edge, err := r.CreateDevice(Device{DeviceID: "d", Capabilities: &Capabilities{IoTEdge: true}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		m := fmt.Sprintf("m%d", i)
		if _, err := r.CreateModule(Module{DeviceID: "d", ModuleID: m}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.UpdateTwin("d", m, "", func(tw *twin.Twin) (bool, error) {
			return tw.ReplaceTags([]byte(`{"a":1}`), time.Now())
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 30 {
		if _, err := r.CreateDevice(Device{DeviceID: fmt.Sprintf("leaf%d", i), Capabilities: &Capabilities{}, DeviceScope: edge.DeviceScope}); err != nil {
			t.Fatal(err)
		}
	}
	if kids, err := r.Children("d"); err != nil || len(kids) != 30 {
		t.Fatalf("children before: %d, %v", len(kids), err)
	}
	if err := r.DeleteDevice("d", ""); err != nil {
		t.Fatalf("delete an edge device with 30 children and 12 modules, 16 ops a Txn: %v", err)
	}
	noRecords(t, r, "devices/d", "modules/d/", "twins/d", moduleStatePrefix+"d/")
	for i := range 30 {
		leaf, err := r.GetDevice(fmt.Sprintf("leaf%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if p := leaf.ParentID(); p != "" || leaf.DeviceScope != "" {
			t.Errorf("%s after its parent's delete: parent %q, scope %q", leaf.DeviceID, p, leaf.DeviceScope)
		}
	}
}
