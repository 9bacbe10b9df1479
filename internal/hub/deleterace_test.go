package hub_test

import (
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/store/storetest"
)

// TestUploadsRacingDeletesLeaveNothing: a device's upload (messages, reported
// properties) whose first write of a record lands as the device or module is
// deleted writes nothing: no telemetry, sync record or twin outlives them.
func TestUploadsRacingDeletesLeaveNothing(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rs := &storetest.Race{Store: st}
	h := hubtest.Start(t, hubtest.Options{Store: rs})
	owner := h.Client(t)
	left := func(prefixes ...string) {
		t.Helper()
		for _, p := range prefixes {
			recs, err := st.List(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				t.Errorf("%s is left behind: %.200s", r.Key, r.Value)
			}
		}
	}
	deleteDevice := func(id string) func() {
		return func() {
			if err := owner.DeleteDevice(ctx, id, ""); err != nil {
				t.Errorf("delete device %s: %v", id, err)
			}
		}
	}

	d1 := device(t, h, "d1")
	rs.Arm("telemetry-state/d1", deleteDevice("d1"))
	if _, err := d1.UploadMessages(ctx, "d1", hubapi.MessageUpload{Epoch: "e", Messages: []hubapi.Message{leafMsg(1, "", "m", "x")}}); err == nil {
		t.Errorf("messages uploaded as the device was deleted: no error")
	}
	left("telemetry/d1/", "telemetry-state/d1", "devices/d1")

	d2 := device(t, h, "d2", "m")
	rs.Arm("twins/d2/m", func() {
		if err := owner.DeleteModule(ctx, "d2", "m", ""); err != nil {
			t.Errorf("delete module: %v", err)
		}
	})
	ack, err := d2.UploadReported(ctx, "d2", hubapi.ReportedBatch{Session: "s", Patches: []hubapi.ReportedPatch{{Seq: 1, ModuleID: "m", Patch: []byte(`{"x":1}`)}}})
	if err != nil || ack.Acked != 1 || len(ack.Rejected) != 1 {
		t.Errorf("reported patch of a module deleted meanwhile: %+v, %v; want it acked and rejected", ack, err)
	}
	left("twins/d2/m", "modules/d2/m")

	d3 := device(t, h, "d3", "m")
	rs.Arm("devicesync/d3", deleteDevice("d3"))
	if _, err := d3.UploadReported(ctx, "d3", hubapi.ReportedBatch{Session: "s", Patches: []hubapi.ReportedPatch{{Seq: 1, ModuleID: "m", Patch: []byte(`{"x":1}`)}}}); err == nil {
		t.Errorf("reported patch uploaded as the device was deleted: no error")
	}
	left("devicesync/d3", "twins/d3", "modules/d3/", "devices/d3")
}

// TestDeleteDeviceTakesItsRecords: what the hub keeps of a device beside
// its identity goes with it: its telemetry and the method calls and results
// a replica that died left in the store (which only the device's next sync
// would have removed).
func TestDeleteDeviceTakesItsRecords(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := hubtest.Start(t, hubtest.Options{Store: st})
	d := device(t, h, "d")
	if _, err := d.UploadMessages(ctx, "d", hubapi.MessageUpload{Epoch: "e", Messages: []hubapi.Message{leafMsg(1, "", "m", "x")}}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"methodcalls/d/c1", "methodresults/d/c1"} {
		if _, err := st.Put(k, []byte(`{"expires":1}`), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Client(t).DeleteDevice(ctx, "d", ""); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"telemetry/d/", "telemetry-state/d", "methodcalls/d/", "methodresults/d/", "devicesync/d", "devices/d"} {
		recs, err := st.List(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			t.Errorf("%s is left after its device's delete", r.Key)
		}
	}
}
