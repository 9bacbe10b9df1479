package registry

import (
	"errors"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hubapi"
)

func leaf(id string) Device { return Device{DeviceID: id, Capabilities: &Capabilities{}} }

func TestScopes(t *testing.T) {
	r, _ := newRegistry(t)
	edge, err := r.CreateDevice(Device{DeviceID: "edge-1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := hubapi.EdgeScope("edge-1", edge.GenerationID); edge.DeviceScope != want || len(edge.ParentScopes) != 0 {
		t.Fatalf("edge device: deviceScope %q parentScopes %q, want %q and none", edge.DeviceScope, edge.ParentScopes, want)
	}
	if id, ok := hubapi.ScopeDeviceID(edge.DeviceScope); !ok || id != "edge-1" {
		t.Fatalf("ScopeDeviceID(%q) = %q, %v", edge.DeviceScope, id, ok)
	}

	// A leaf device with the edge device's scope is its child.
	l := leaf("sensor-1")
	l.DeviceScope = edge.DeviceScope
	child, err := r.CreateDevice(l)
	if err != nil {
		t.Fatal(err)
	}
	if child.DeviceScope != edge.DeviceScope || len(child.ParentScopes) != 1 || child.ParentScopes[0] != edge.DeviceScope || child.ParentID() != "edge-1" {
		t.Fatalf("child: %q %q parent %q", child.DeviceScope, child.ParentScopes, child.ParentID())
	}
	got, err := r.GetDevice("sensor-1")
	if err != nil || got.ParentID() != "edge-1" {
		t.Fatalf("read back: %+v, %v", got, err)
	}
	// An update that leaves the scopes out keeps the parent.
	got.DeviceScope, got.ParentScopes, got.Status = "", nil, "disabled"
	if got, err = r.UpdateDevice(got, "*"); err != nil || got.ParentID() != "edge-1" {
		t.Fatalf("update without scopes: parent %q, %v", got.ParentID(), err)
	}
	// parentScopes alone sets a leaf's parent too.
	l2 := leaf("sensor-2")
	l2.ParentScopes = []string{edge.DeviceScope}
	if c, err := r.CreateDevice(l2); err != nil || c.DeviceScope != edge.DeviceScope {
		t.Fatalf("child by parentScopes: %+v, %v", c, err)
	}

	// A nested edge device: parentScopes; its own scope stays its own.
	n := Device{DeviceID: "edge-2", ParentScopes: []string{edge.DeviceScope}}
	nested, err := r.CreateDevice(n)
	if err != nil {
		t.Fatal(err)
	}
	if nested.DeviceScope != hubapi.EdgeScope("edge-2", nested.GenerationID) || nested.ParentID() != "edge-1" {
		t.Fatalf("nested edge: %q %q", nested.DeviceScope, nested.ParentScopes)
	}
	kids, err := r.Children("edge-1")
	if err != nil || len(kids) != 3 {
		t.Fatalf("children of edge-1: %d, %v", len(kids), err)
	}
	// edge-1 under edge-2 would be a cycle.
	e1, _ := r.GetDevice("edge-1")
	e1.ParentScopes = []string{nested.DeviceScope}
	if _, err := r.UpdateDevice(e1, "*"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "under itself") {
		t.Fatalf("cycle: %v", err)
	}

	bad := []struct {
		name string
		d    Device
		want string
	}{
		{"not a scope", Device{DeviceID: "x1", Capabilities: &Capabilities{}, DeviceScope: "edge-1"}, "not an edge device's scope"},
		{"no such parent", Device{DeviceID: "x2", Capabilities: &Capabilities{}, DeviceScope: hubapi.EdgeScope("ghost", "636")}, "does not exist"},
		{"leaf parent", Device{DeviceID: "x3", Capabilities: &Capabilities{}, DeviceScope: hubapi.EdgeScope("sensor-1", child.GenerationID)}, "leaf device"},
		{"stale scope", Device{DeviceID: "x4", Capabilities: &Capabilities{}, DeviceScope: hubapi.EdgeScope("edge-1", "630000000000000000")}, "earlier device"},
		{"two parents", Device{DeviceID: "x5", Capabilities: &Capabilities{}, ParentScopes: []string{edge.DeviceScope, nested.DeviceScope}}, "at most one parent"},
		{"edge scope given", Device{DeviceID: "x6", DeviceScope: edge.DeviceScope}, "is its own"},
	}
	for _, tc := range bad {
		if _, err := r.CreateDevice(tc.d); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want ErrInvalid with %q", tc.name, err, tc.want)
		}
		if _, err := r.GetDevice(tc.d.DeviceID); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: the refused device was created", tc.name)
		}
	}

	// An empty parentScopes with no deviceScope removes a leaf's parent.
	s2, _ := r.GetDevice("sensor-2")
	s2.DeviceScope, s2.ParentScopes = "", []string{}
	if s2, err = r.UpdateDevice(s2, "*"); err != nil || s2.ParentID() != "" || s2.DeviceScope != "" {
		t.Fatalf("remove parent: %+v, %v", s2, err)
	}

	// Deleting the parent removes it from its children, in the same write.
	if err := r.DeleteDevice("edge-1", ""); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"sensor-1", "edge-2"} {
		d, err := r.GetDevice(id)
		if err != nil || d.ParentID() != "" || len(d.ParentScopes) != 0 {
			t.Fatalf("%s after its parent's deletion: %q %q, %v", id, d.DeviceScope, d.ParentScopes, err)
		}
	}
	if d, _ := r.GetDevice("edge-2"); d.DeviceScope != nested.DeviceScope {
		t.Fatalf("edge-2 lost its own scope: %q", d.DeviceScope)
	}
	// A re-created edge-1 has a new scope; the old one names no device now.
	e1, err = r.CreateDevice(Device{DeviceID: "edge-1"})
	if err != nil || e1.DeviceScope == edge.DeviceScope {
		t.Fatalf("re-created edge-1: %q (was %q), %v", e1.DeviceScope, edge.DeviceScope, err)
	}
}

// An edge device stored before scopes were kept gets its scope on read.
func TestScopeOfOldRecord(t *testing.T) {
	r, _ := newRegistry(t)
	d, err := r.CreateDevice(Device{DeviceID: "old"})
	if err != nil {
		t.Fatal(err)
	}
	d.DeviceScope = ""
	b, err := marshalIdentity(d)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "deviceScope") {
		t.Fatalf("old record has a scope: %s", b)
	}
	v, _ := versionOf(d.ETag)
	if _, err := r.st.Put(deviceKey("old"), b, v); err != nil {
		t.Fatal(err)
	}
	got, err := r.GetDevice("old")
	if err != nil || got.DeviceScope != hubapi.EdgeScope("old", d.GenerationID) {
		t.Fatalf("old record: %q, %v", got.DeviceScope, err)
	}
}
