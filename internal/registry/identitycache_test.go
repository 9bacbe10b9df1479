package registry

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/outpost-edge/outpost/internal/store"
)

// TestIdentityCache checks that the devices and modules the registry keeps
// decoded are what decoding their records gives, that a caller changing an
// identity it got (through its pointers and slices too) does not change the
// kept one, and that writes by the registry or straight to the store (a
// transaction, another replica) are seen at once.
func TestIdentityCache(t *testing.T) {
	r, _ := newRegistry(t)
	if _, err := r.CreateDevice(Device{DeviceID: "p"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateDevice(Device{DeviceID: "d", Capabilities: &Capabilities{IoTEdge: true}, ParentScopes: []string{mustGetDevice(t, r, "p").DeviceScope}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateModule(Module{DeviceID: "d", ModuleID: "m"}); err != nil {
		t.Fatal(err)
	}
	decodedModule := func() Module {
		t.Helper()
		rec, err := r.st.Get(moduleKey("d", "m"))
		if err != nil {
			t.Fatal(err)
		}
		var m Module
		if err := json.Unmarshal(rec.Value, &m); err != nil {
			t.Fatal(err)
		}
		m.ETag = ETagOf(rec.Version)
		return m
	}
	decodedDevice := func() Device {
		t.Helper()
		rec, err := r.st.Get(deviceKey("d"))
		if err != nil {
			t.Fatal(err)
		}
		var d Device
		if err := json.Unmarshal(rec.Value, &d); err != nil {
			t.Fatal(err)
		}
		d.ETag = ETagOf(rec.Version)
		ownScope(&d)
		return d
	}
	check := func(step string) {
		t.Helper()
		for range 2 { // the first read may decode, the second comes from the cache
			m, err := r.GetModule("d", "m")
			if err != nil {
				t.Fatal(err)
			}
			if want := decodedModule(); !reflect.DeepEqual(m, want) {
				t.Fatalf("%s: module\n%+v\nwant\n%+v", step, m, want)
			}
			m.Authentication.SymmetricKey.PrimaryKey, m.ETag = "changed", "changed"
			d := mustGetDevice(t, r, "d")
			if want := decodedDevice(); !reflect.DeepEqual(d, want) {
				t.Fatalf("%s: device\n%+v\nwant\n%+v", step, d, want)
			}
			d.Authentication.SymmetricKey.SecondaryKey, d.Capabilities.IoTEdge, d.ParentScopes[0] = "changed", false, "changed"
		}
	}
	check("created")

	m, _ := r.GetModule("d", "m")
	m.Authentication.SymmetricKey.PrimaryKey = "bmV3IHByaW1hcnkga2V5IG9mIDMyIGJ5dGVzISEhISE="
	if _, err := r.UpdateModule(m, ""); err != nil {
		t.Fatal(err)
	}
	check("updated by the registry")

	// Writes straight to the store.
	m = decodedModule()
	m.CloudToDeviceMessageCount = 42
	mb, _ := json.Marshal(m)
	if _, err := r.st.Put(moduleKey("d", "m"), mb, store.Any); err != nil {
		t.Fatal(err)
	}
	d := decodedDevice()
	d.StatusReason = "written elsewhere"
	db, _ := json.Marshal(d)
	if _, err := r.st.Put(deviceKey("d"), db, store.Any); err != nil {
		t.Fatal(err)
	}
	check("written to the store")
	if got, _ := r.GetModule("d", "m"); got.CloudToDeviceMessageCount != 42 {
		t.Fatalf("a module written to the store not seen: %+v", got)
	}
	if got := mustGetDevice(t, r, "d"); got.StatusReason != "written elsewhere" {
		t.Fatalf("a device written to the store not seen: %+v", got)
	}

	if err := r.DeleteModule("d", "m", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.GetModule("d", "m"); err == nil {
		t.Fatal("a deleted module is still found")
	}
}

func mustGetDevice(t *testing.T, r *Registry, id string) Device {
	t.Helper()
	d, err := r.GetDevice(id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
