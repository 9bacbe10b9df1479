package registry

import (
	"errors"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/deployment"
)

func keysOf(a *Authentication) SymmetricKey { return *a.SymmetricKey }

// An update that leaves keys out keeps them, as IoT Hub: the SDKs send empty
// keys when the caller gave none (registry.update({deviceId, status})).
func TestUpdateKeepsWhatItLeavesOut(t *testing.T) {
	r, _ := newRegistry(t)
	d, err := r.CreateDevice(Device{DeviceID: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	keys := keysOf(d.Authentication)
	empty := &Authentication{Type: "sas", SymmetricKey: &SymmetricKey{}}
	upd, err := r.UpdateDevice(Device{DeviceID: "d1", Status: "disabled", Authentication: empty}, "*")
	if err != nil {
		t.Fatal(err)
	}
	if upd.Status != "disabled" || keysOf(upd.Authentication) != keys {
		t.Fatalf("update with empty keys: status %s keys %+v, want disabled and %+v", upd.Status, keysOf(upd.Authentication), keys)
	}
	// No authentication and no status at all: both kept.
	upd, err = r.UpdateDevice(Device{DeviceID: "d1"}, "*")
	if err != nil || upd.Status != "disabled" || keysOf(upd.Authentication) != keys {
		t.Fatalf("update with nothing: %+v %v", upd, err)
	}
	if got, _ := r.GetDevice("d1"); keysOf(got.Authentication) != keys || !IsEdge(got) {
		t.Fatalf("stored device lost its keys or capabilities: %+v", got)
	}
	// A new primary key alone replaces the primary key only.
	newKey := keys.SecondaryKey // any valid key
	upd, err = r.UpdateDevice(Device{DeviceID: "d1", Authentication: &Authentication{Type: "sas", SymmetricKey: &SymmetricKey{PrimaryKey: newKey}}}, "*")
	if err != nil || keysOf(upd.Authentication) != (SymmetricKey{PrimaryKey: newKey, SecondaryKey: keys.SecondaryKey}) {
		t.Fatalf("update of the primary key: %+v %v", upd.Authentication.SymmetricKey, err)
	}

	// Modules too.
	m, err := r.CreateModule(Module{DeviceID: "d1", ModuleID: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	mkeys := keysOf(m.Authentication)
	um, err := r.UpdateModule(Module{DeviceID: "d1", ModuleID: "m1", ManagedBy: "me", Authentication: empty}, "*")
	if err != nil || keysOf(um.Authentication) != mkeys || um.ManagedBy != "me" {
		t.Fatalf("module update with empty keys: %+v %v, want keys %+v", um, err, mkeys)
	}
	um, err = r.UpdateModule(Module{DeviceID: "d1", ModuleID: "m1"}, "*")
	if err != nil || keysOf(um.Authentication) != mkeys {
		t.Fatalf("module update with no authentication: %+v %v", um, err)
	}
}

func TestLeafDevice(t *testing.T) {
	r, _ := newRegistry(t)
	leaf, err := r.CreateDevice(Device{DeviceID: "leaf", Capabilities: &Capabilities{IoTEdge: false}})
	if err != nil {
		t.Fatal(err)
	}
	if IsEdge(leaf) || leaf.Capabilities == nil {
		t.Fatalf("created %+v, want capabilities.iotEdge false", leaf.Capabilities)
	}
	mods, err := r.ListModules("leaf")
	if err != nil || len(mods) != 0 {
		t.Fatalf("a leaf device has modules %+v (%v), want none", mods, err)
	}
	m, _, err := deployment.Parse([]byte(`{"schemaVersion":"1.0","modules":{"m":{"image":"x:1"}}}`), "manifest")
	if err != nil {
		t.Fatal(err)
	}
	err = r.ApplyDeployment("leaf", m)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `device "leaf" is not an IoT Edge device`) {
		t.Fatalf("deploy to a leaf device: %v, want ErrInvalid naming the device", err)
	}
	if mods, _ := r.ListModules("leaf"); len(mods) != 0 {
		t.Fatalf("a refused deployment left modules %+v", mods)
	}
	// Capabilities can't change on update; leaving them out keeps them.
	_, err = r.UpdateDevice(Device{DeviceID: "leaf", Capabilities: &Capabilities{IoTEdge: true}}, "*")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "capabilities.iotEdge is false and cannot change") {
		t.Fatalf("update to edge: %v", err)
	}
	if upd, err := r.UpdateDevice(Device{DeviceID: "leaf", Status: "disabled"}, "*"); err != nil || IsEdge(upd) {
		t.Fatalf("update leaving capabilities out: %+v %v", upd.Capabilities, err)
	}

	// nil capabilities (Go callers): an edge device with its agent module, which deploys.
	edge, err := r.CreateDevice(Device{DeviceID: "edge"})
	if err != nil || !IsEdge(edge) || edge.Capabilities == nil {
		t.Fatalf("create with nil capabilities: %+v %v", edge.Capabilities, err)
	}
	if _, err := r.GetModule("edge", AgentModule); err != nil {
		t.Fatalf("edge device has no %s: %v", AgentModule, err)
	}
	if err := r.ApplyDeployment("edge", m); err != nil {
		t.Fatalf("deploy to an edge device: %v", err)
	}
}

func TestImport(t *testing.T) {
	r, _ := newRegistry(t)
	for _, s := range []string{"create", "CREATE", "Update", "UpdateIfMatchETag", "Delete", "DeleteIfMatchETag", "createOrUpdate", "createorupdateifmatchetag"} {
		if _, err := ParseImportMode(s); err != nil {
			t.Errorf("ParseImportMode(%q): %v", s, err)
		}
	}
	if m, err := ParseImportMode(""); err != nil || m != ImportCreateOrUpdate {
		t.Errorf(`ParseImportMode(""): %q %v, want createOrUpdate`, m, err)
	}
	if _, err := ParseImportMode("upsert"); err == nil || !strings.Contains(err.Error(), "not one of create, createOrUpdate") {
		t.Errorf("ParseImportMode(upsert): %v", err)
	}
	if _, err := ParseImportMode("UpdateTwin"); err == nil || !strings.Contains(err.Error(), "PATCH /twins/{id}") {
		t.Errorf("ParseImportMode(UpdateTwin): %v", err)
	}

	// create: a leaf device unless capabilities say otherwise.
	d, err := r.Import(Device{DeviceID: "a"}, ImportCreate, "")
	if err != nil || IsEdge(d) {
		t.Fatalf("import create: %+v %v", d.Capabilities, err)
	}
	if _, err := r.Import(Device{DeviceID: "a"}, ImportCreate, ""); !errors.Is(err, ErrExists) {
		t.Fatalf("import create of an existing device: %v", err)
	}
	e, err := r.Import(Device{DeviceID: "e", Capabilities: &Capabilities{IoTEdge: true}}, ImportCreate, "")
	if err != nil || !IsEdge(e) {
		t.Fatalf("import create of an edge device: %+v %v", e.Capabilities, err)
	}
	// update keeps keys; updateIfMatchETag needs the etag and checks it.
	u, err := r.Import(Device{DeviceID: "a", Status: "disabled", Authentication: &Authentication{Type: "sas", SymmetricKey: &SymmetricKey{}}}, ImportUpdate, "")
	if err != nil || u.Status != "disabled" || keysOf(u.Authentication) != keysOf(d.Authentication) {
		t.Fatalf("import update: %+v %v", u, err)
	}
	if _, err := r.Import(Device{DeviceID: "a"}, ImportUpdateIfMatchETag, ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("updateIfMatchETag without etag: %v", err)
	}
	if _, err := r.Import(Device{DeviceID: "a"}, ImportUpdateIfMatchETag, d.ETag); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("updateIfMatchETag with a stale etag: %v", err)
	}
	if _, err := r.Import(Device{DeviceID: "a", Status: "enabled"}, ImportUpdateIfMatchETag, `"`+u.ETag+`"`); err != nil {
		t.Fatalf("updateIfMatchETag with the current etag: %v", err)
	}
	if _, err := r.Import(Device{DeviceID: "nope"}, ImportUpdate, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of a missing device: %v", err)
	}
	// createOrUpdate both ways.
	if c, err := r.Import(Device{DeviceID: "b"}, ImportCreateOrUpdate, ""); err != nil || c.Status != "enabled" {
		t.Fatalf("createOrUpdate of a new device: %+v %v", c, err)
	}
	if c, err := r.Import(Device{DeviceID: "b", Status: "disabled"}, ImportCreateOrUpdate, ""); err != nil || c.Status != "disabled" {
		t.Fatalf("createOrUpdate of an existing device: %+v %v", c, err)
	}
	// delete and deleteIfMatchETag.
	cur, _ := r.GetDevice("b")
	if _, err := r.Import(Device{DeviceID: "b"}, ImportDeleteIfMatchETag, d.ETag); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("deleteIfMatchETag with a stale etag: %v", err)
	}
	if _, err := r.Import(Device{DeviceID: "b"}, ImportDeleteIfMatchETag, cur.ETag); err != nil {
		t.Fatalf("deleteIfMatchETag: %v", err)
	}
	if _, err := r.Import(Device{DeviceID: "a"}, ImportDelete, ""); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := r.Import(Device{DeviceID: "a"}, ImportDelete, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete of a missing device: %v", err)
	}

	s, err := r.DeviceStatistics()
	if err != nil || s != (Statistics{TotalDeviceCount: 1, EnabledDeviceCount: 1}) {
		t.Fatalf("statistics: %+v %v, want 1 device, enabled", s, err)
	}
	if _, err := r.UpdateDevice(Device{DeviceID: "e", Status: "disabled"}, "*"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"f", "g"} {
		if _, err := r.CreateDevice(Device{DeviceID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if s, err := r.DeviceStatistics(); err != nil || s != (Statistics{TotalDeviceCount: 3, EnabledDeviceCount: 2, DisabledDeviceCount: 1}) {
		t.Fatalf("statistics: %+v %v, want 3 devices, 2 enabled, 1 disabled", s, err)
	}
}
