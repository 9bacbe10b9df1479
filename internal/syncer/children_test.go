package syncer

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
)

// addLeaf makes a leaf device whose parent is d.
func addLeaf(t *testing.T, f *fixture, id string) hubapi.Device {
	t.Helper()
	c := f.hub.Client(t)
	p, err := c.GetDevice(t.Context(), "d")
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.CreateDevice(t.Context(), hubapi.Device{DeviceID: id, DeviceScope: p.DeviceScope, Capabilities: &hubapi.Capabilities{}})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func waitChange(t *testing.T, changes <-chan Change, what string, match func(Change) bool) {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case c := <-changes:
			if match(c) {
				return
			}
		case <-timeout:
			t.Fatalf("no change notified: %s", what)
		}
	}
}

func TestChildrenFollowTheHub(t *testing.T) {
	f := setup(t)
	l := addLeaf(t, f, "leaf")
	s, _ := run(t, f, f.st)
	changes := s.Watch(t.Context())
	eventually(t, "first sync", s.Synced)
	kids, err := s.Children()
	if err != nil || len(kids) != 1 || kids[0].DeviceID != "leaf" || kids[0].PrimaryKey != l.Authentication.SymmetricKey.PrimaryKey {
		t.Fatalf("children: %+v %v", kids, err)
	}
	if tw, err := s.ChildTwin("leaf"); err != nil || tw.DeviceID != "leaf" || tw.ModuleID != "" {
		t.Fatalf("child twin: %+v %v", tw, err)
	}
	// A module's twin is not a child's, nor the other way round.
	if _, err := s.ChildTwin("a"); !errors.Is(err, ErrUnknownChild) {
		t.Fatalf("module a as a child: %v", err)
	}
	if _, err := s.Twin("/leaf"); !errors.Is(err, ErrUnknownModule) {
		t.Fatalf("a child's ref as a module: %v", err)
	}

	c := f.hub.Client(t)
	if _, err := c.PatchTwin(t.Context(), "leaf", "", []byte(`{"properties":{"desired":{"rate":3}}}`), ""); err != nil {
		t.Fatal(err)
	}
	waitChange(t, changes, "the child's desired change", func(c Change) bool { return c.DeviceID == "leaf" && c.DesiredVersion == 2 })
	if tw, _ := s.ChildTwin("leaf"); tw.Desired()["rate"] != json.Number("3") {
		t.Fatalf("child twin desired %s", tw.DesiredJSON())
	}

	// A reported patch goes through the outbox to the child's twin at the hub.
	if _, err := s.PatchChildReported("leaf", []byte(`{"temp":20}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PatchChildReported("nobody", []byte(`{"temp":20}`)); !errors.Is(err, ErrUnknownChild) {
		t.Fatalf("patch of an unknown child: %v", err)
	}
	eventually(t, "the child's report at the hub", func() bool {
		tw, err := c.GetTwin(t.Context(), "leaf", "")
		return err == nil && tw.Reported()["temp"] == json.Number("20")
	})

	// Re-keyed, then removed: the identity changes reach the device.
	d, _ := c.GetDevice(t.Context(), "leaf")
	newKey := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	d.Authentication.SymmetricKey.PrimaryKey = newKey
	if _, err := c.UpdateDevice(t.Context(), d, "*"); err != nil {
		t.Fatal(err)
	}
	waitChange(t, changes, "the child re-keyed", func(c Change) bool { return c.Children })
	eventually(t, "the new key", func() bool {
		k, err := s.Child("leaf")
		return err == nil && k.PrimaryKey == newKey
	})
	if err := c.DeleteDevice(t.Context(), "leaf", ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the child to go", func() bool {
		kids, _ := s.Children()
		return len(kids) == 0
	})
	if _, err := s.ChildTwin("leaf"); !errors.Is(err, ErrUnknownChild) {
		t.Fatalf("twin of a removed child: %v", err)
	}
}

// TestChildrenOffline: the children and their twins are served with the
// hub down, also by a syncer started anew offline, whose reports reach the
// hub once it is back.
func TestChildrenOffline(t *testing.T) {
	f := setup(t)
	addLeaf(t, f, "leaf")
	s, stop := run(t, f, f.st)
	eventually(t, "first sync", s.Synced)
	addr := f.hub.Addr().String()
	f.hub.Stop()

	if _, err := s.PatchChildReported("leaf", []byte(`{"n":1}`)); err != nil {
		t.Fatalf("report offline: %v", err)
	}
	stop()

	// A daemon restarted while the hub is down.
	s2, _ := run(t, f, f.st)
	kids, err := s2.Children()
	if err != nil || len(kids) != 1 || kids[0].PrimaryKey == "" {
		t.Fatalf("children after an offline restart: %+v %v", kids, err)
	}
	tw, err := s2.ChildTwin("leaf")
	if err != nil || tw.Reported()["n"] != json.Number("1") {
		t.Fatalf("child twin after an offline restart: %v", err)
	}
	if tw, err = s2.PatchChildReported("leaf", []byte(`{"n":2,"m":"x"}`)); err != nil || tw.Reported()["n"] != json.Number("2") {
		t.Fatalf("report after an offline restart: %v", err)
	}
	st, _ := s2.Status()
	if st.Outbox.Patches != 2 {
		t.Fatalf("outbox %+v, want 2 patches", st.Outbox)
	}

	h2 := hubtest.Start(t, hubtest.Options{DataDir: f.hubData, Listen: addr})
	eventually(t, "the outbox to drain", func() bool {
		st, _ := s2.Status()
		return st.Connected && st.Outbox.Patches == 0
	})
	ht, err := h2.Client(t).GetTwin(context.Background(), "leaf", "")
	if err != nil || string(ht.ReportedJSON()) != `{"m":"x","n":2}` || ht.ReportedVersion() != 3 {
		t.Fatalf("hub's leaf twin: %s v%d %v", ht.ReportedJSON(), ht.ReportedVersion(), err)
	}
}

// TestEchoNotRewritten: the hub's answer to the device's own reported
// patches (the twins its upload changed) leaves the local twin's record as
// it was, while a desired change in an answer is written.
func TestEchoNotRewritten(t *testing.T) {
	f := setup(t)
	addLeaf(t, f, "leaf")
	s := syncedOnce(t, f)
	if _, err := s.PatchChildReported("leaf", []byte(`{"temp":20}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	rec, err := f.st.Get("childtwins/leaf")
	if err != nil {
		t.Fatal(err)
	}
	resp := mustSync(t, f)
	if len(resp.ChildTwins) != 1 {
		t.Fatalf("the answer has %d child twins, want the leaf's", len(resp.ChildTwins))
	}
	if err := s.apply(resp); err != nil {
		t.Fatal(err)
	}
	if again, _ := f.st.Get("childtwins/leaf"); again.Version != rec.Version {
		t.Fatalf("the leaf's twin was written again (version %d, was %d) for an answer the device had", again.Version, rec.Version)
	}

	if _, err := f.hub.Client(t).PatchTwin(t.Context(), "leaf", "", []byte(`{"properties":{"desired":{"rate":3}}}`), ""); err != nil {
		t.Fatal(err)
	}
	if err := s.apply(mustSync(t, f)); err != nil {
		t.Fatal(err)
	}
	tw, err := s.ChildTwin("leaf")
	if again, _ := f.st.Get("childtwins/leaf"); err != nil || again.Version == rec.Version || tw.Desired()["rate"] != json.Number("3") || tw.Reported()["temp"] != json.Number("20") {
		t.Fatalf("after a desired change: record version %d (was %d), twin desired %s reported %s, %v", again.Version, rec.Version, tw.DesiredJSON(), tw.ReportedJSON(), err)
	}
}
