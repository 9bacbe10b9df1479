package hub_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/twin"
)

// leaf makes a leaf device, the child of the edge device parent ("" for
// none).
func leaf(t *testing.T, h *hubtest.Hub, id, parent string) hubapi.Device {
	t.Helper()
	c := h.Client(t)
	d := hubapi.Device{DeviceID: id, Capabilities: &hubapi.Capabilities{IoTEdge: false}}
	if parent != "" {
		p, err := c.GetDevice(ctx, parent)
		if err != nil {
			t.Fatal(err)
		}
		d.DeviceScope = p.DeviceScope
	}
	d, err := c.CreateDevice(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func childTwinOf(t *testing.T, s *hubapi.Sync, id string) *twin.Twin {
	t.Helper()
	for _, raw := range s.ChildTwins {
		tw := new(twin.Twin)
		if err := tw.UnmarshalJSON(raw); err != nil {
			t.Fatal(err)
		}
		if tw.DeviceID == id && tw.ModuleID == "" {
			return tw
		}
	}
	return nil
}

// pollAfter long-polls from cursor while change runs, and returns the answer.
func pollAfter(t *testing.T, dc *hubclient.Client, cursor string, change func()) *hubapi.Sync {
	t.Helper()
	type result struct {
		s   *hubapi.Sync
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := dc.Sync(ctx, "e", cursor, 30*time.Second)
		done <- result{s, err}
	}()
	time.Sleep(100 * time.Millisecond) // let the poll park (a change before it is seen anyway: the cursor differs)
	change()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.s.Cursor == cursor {
			t.Fatalf("the poll answered with the same cursor: the change did not wake it")
		}
		return r.s
	case <-time.After(20 * time.Second):
		t.Fatal("the parent's long poll was not woken by a change of its child")
		return nil
	}
}

func TestSyncDeliversChildren(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	dc := device(t, h, "e")
	c := h.Client(t)
	l := leaf(t, h, "leaf", "e")
	leaf(t, h, "stranger", "")

	full, err := dc.Sync(ctx, "e", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(full.Children) != 1 || full.Children[0].DeviceID != "leaf" || full.Children[0].PrimaryKey != l.Authentication.SymmetricKey.PrimaryKey ||
		full.Children[0].SecondaryKey == "" || full.Children[0].Status != "enabled" || full.Children[0].GenerationID != l.GenerationID {
		t.Fatalf("full sync children: %+v", full.Children)
	}
	if tw := childTwinOf(t, full, "leaf"); tw == nil || len(full.ChildTwins) != 1 {
		t.Fatalf("full sync child twins: %d, want leaf's", len(full.ChildTwins))
	}
	var doc map[string]any // IoT Hub's shape, as GET /twins/leaf
	if err := json.Unmarshal(full.ChildTwins[0], &doc); err != nil || doc["deviceId"] != "leaf" || doc["properties"] == nil || doc["deviceScope"] == nil {
		t.Fatalf("child twin %s: %v", full.ChildTwins[0], err)
	}

	// Nothing changed: children unchanged (null), no twins.
	again, err := dc.Sync(ctx, "e", full.Cursor, 0)
	if err != nil || again.Cursor != full.Cursor || again.Children != nil || len(again.ChildTwins) != 0 {
		t.Fatalf("unchanged sync: %+v %v", again, err)
	}
	raw, _ := json.Marshal(again)
	if !strings.Contains(string(raw), `"children":null`) {
		t.Fatalf("unchanged children are not null on the wire: %s", raw)
	}

	// A desired change of the child wakes the parent and brings the twin only.
	s := pollAfter(t, dc, full.Cursor, func() {
		if _, err := c.PatchTwin(ctx, "leaf", "", []byte(`{"properties":{"desired":{"rate":5}}}`), ""); err != nil {
			t.Fatal(err)
		}
	})
	if s.Children != nil || s.Full {
		t.Fatalf("a twin change sent the children again: %+v", s.Children)
	}
	if tw := childTwinOf(t, s, "leaf"); tw == nil || tw.Desired()["rate"] != json.Number("5") {
		t.Fatalf("woken poll lacks the child's desired change: %d twins", len(s.ChildTwins))
	}

	// Disabled: the children come again, with the status.
	s = pollAfter(t, dc, s.Cursor, func() {
		d, err := c.GetDevice(ctx, "leaf")
		if err != nil {
			t.Fatal(err)
		}
		d.Status = "disabled"
		if _, err := c.UpdateDevice(ctx, d, "*"); err != nil {
			t.Fatal(err)
		}
	})
	if len(s.Children) != 1 || s.Children[0].Status != "disabled" || childTwinOf(t, s, "leaf") == nil {
		t.Fatalf("after disabling: %+v", s.Children)
	}

	// A stranger becomes a child: added, with its twin.
	s = pollAfter(t, dc, s.Cursor, func() {
		p, _ := c.GetDevice(ctx, "e")
		if _, err := c.SetParent(ctx, "stranger", p.DeviceScope, ""); err != nil {
			t.Fatal(err)
		}
	})
	if len(s.Children) != 2 || s.Children[1].DeviceID != "stranger" || childTwinOf(t, s, "stranger") == nil {
		t.Fatalf("after adopting: %+v", s.Children)
	}

	// Removed from the parent, and the other deleted: now none, [] not null.
	s = pollAfter(t, dc, s.Cursor, func() {
		if _, err := c.SetParent(ctx, "leaf", "", ""); err != nil {
			t.Fatal(err)
		}
		if err := c.DeleteDevice(ctx, "stranger", ""); err != nil {
			t.Fatal(err)
		}
	})
	// The changes may come in several answers, and an answer woken by one of
	// the records they write before the children it changes are read has the
	// children unchanged (null): poll until they come as none.
	deadline := time.Now().Add(20 * time.Second)
	for s.Children == nil || len(s.Children) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the children after removal never came as none: %+v", s.Children)
		}
		if s, err = dc.Sync(ctx, "e", s.Cursor, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	raw, _ = json.Marshal(s)
	if !strings.Contains(string(raw), `"children":[]`) {
		t.Fatalf("no children is not [] on the wire: %s", raw)
	}
}

func TestChildReportedPatches(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	dc := device(t, h, "e")
	device(t, h, "e2")
	leaf(t, h, "leaf", "e")
	leaf(t, h, "foreign", "e2")
	s, err := dc.Sync(ctx, "e", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := dc.UploadReported(ctx, "e", hubapi.ReportedBatch{Session: "s1", Patches: []hubapi.ReportedPatch{
		{Seq: 1, DeviceID: "leaf", Patch: json.RawMessage(`{"temp":21}`)},
		{Seq: 2, DeviceID: "foreign", Patch: json.RawMessage(`{"temp":99}`)},
		{Seq: 3, DeviceID: "ghost", Patch: json.RawMessage(`{"temp":1}`)},
		{Seq: 4, DeviceID: "leaf", Patch: json.RawMessage(`{"temp":22,"fw":"1.0"}`)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if ack.Acked != 4 || len(ack.Rejected) != 2 || ack.Rejected[0].Seq != 2 || ack.Rejected[1].Seq != 3 {
		t.Fatalf("ack %+v", ack)
	}
	if r := ack.Rejected[0].Error; !strings.Contains(r, `"foreign" is not a child of device "e"`) {
		t.Errorf("foreign child's rejection: %s", r)
	}
	if r := ack.Rejected[1].Error; !strings.Contains(r, "ghost") {
		t.Errorf("unknown device's rejection: %s", r)
	}
	tw, err := h.Client(t).GetTwin(ctx, "leaf", "")
	if err != nil || string(tw.ReportedJSON()) != `{"fw":"1.0","temp":22}` {
		t.Fatalf("leaf reported %s %v", tw.ReportedJSON(), err)
	}
	if ft, _ := h.Client(t).GetTwin(ctx, "foreign", ""); strings.Contains(string(ft.ReportedJSON()), "99") {
		t.Fatalf("a foreign child's twin took the patch: %s", ft.ReportedJSON())
	}
	// The parent's next sync says which of its patches the hub holds, and
	// leaves out the twin its own upload wrote (it has it: 1,000 leaves'
	// twins came back after every upload); a full sync carries it.
	next, err := dc.Sync(ctx, "e", s.Cursor, 0)
	if err != nil {
		t.Fatal(err)
	}
	if next.Cursor == s.Cursor || len(next.ChildTwins) != 0 || next.Reported == nil || next.Reported.Seq != 4 {
		t.Fatalf("sync after the upload: cursor moved %v, twins %d, reported %+v", next.Cursor != s.Cursor, len(next.ChildTwins), next.Reported)
	}
	full, err := dc.Sync(ctx, "e", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if tw := childTwinOf(t, full, "leaf"); tw == nil || string(tw.ReportedJSON()) != `{"fw":"1.0","temp":22}` {
		t.Fatalf("full sync after the upload: twins %d", len(full.ChildTwins))
	}
	// A write by someone else (a desired patch) brings the twin again, also
	// when the device's upload wrote the twin after it (the leaf reports
	// every second: the desired change must not be taken for an echo).
	if _, err := h.Client(t).PatchTwin(ctx, "leaf", "", []byte(`{"properties":{"desired":{"rate":2}}}`), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := dc.UploadReported(ctx, "e", hubapi.ReportedBatch{Session: "s1", Patches: []hubapi.ReportedPatch{
		{Seq: 5, DeviceID: "leaf", Patch: json.RawMessage(`{"temp":23}`)},
	}}); err != nil {
		t.Fatal(err)
	}
	again, err := dc.Sync(ctx, "e", next.Cursor, 0)
	if err != nil {
		t.Fatal(err)
	}
	if tw := childTwinOf(t, again, "leaf"); tw == nil || string(tw.ReportedJSON()) != `{"fw":"1.0","temp":23}` || tw.DesiredVersion() != 2 {
		t.Fatalf("sync after a desired patch and an upload: twins %d", len(again.ChildTwins))
	}
	// From that answer on, uploads alone are echoes again.
	if _, err := dc.UploadReported(ctx, "e", hubapi.ReportedBatch{Session: "s1", Patches: []hubapi.ReportedPatch{
		{Seq: 6, DeviceID: "leaf", Patch: json.RawMessage(`{"temp":24}`)},
	}}); err != nil {
		t.Fatal(err)
	}
	if last, err := dc.Sync(ctx, "e", again.Cursor, 0); err != nil || len(last.ChildTwins) != 0 {
		t.Fatalf("sync after an upload alone: %v %v", last, err)
	}
}
