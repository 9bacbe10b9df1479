package registry

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/outpost-edge/outpost/internal/deployment"
	"github.com/outpost-edge/outpost/internal/fulldisk"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

// keys returns every key in st.
func keys(t testing.TB, st store.Store) []string {
	t.Helper()
	recs, err := st.List("")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, r.Key)
	}
	return out
}

// TestFullDiskChangesNothing runs each multi-record write on a full disk (a real tmpfs),
// with no room and with room for one record file: it fails with a SpaceError, leaves the
// store as it was, and succeeds when retried with space (a device create gets no 409).
func TestFullDiskChangesNothing(t *testing.T) {
	mnt := fulldisk.Mount(t, "1m")
	st, err := store.Open(filepath.Join(mnt, "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := New(st)
	if _, err := r.CreateDevice(Device{DeviceID: "old"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateModule(Module{DeviceID: "old", ModuleID: "m", ManagedBy: ManagedBy}); err != nil {
		t.Fatal(err)
	}
	man, _, err := deployment.Parse([]byte("schemaVersion: \"1.0\"\nmodules:\n  web:\n    image: localhost:5000/web:1\n    desired: {a: 1}\n"), "d.yaml")
	if err != nil {
		t.Fatal(err)
	}
	writes := map[string]func() error{
		"create device": func() error { _, err := r.CreateDevice(Device{DeviceID: "new"}); return err },
		"create module": func() error {
			_, err := r.CreateModule(Module{DeviceID: "old", ModuleID: "m2"})
			return err
		},
		"apply deployment": func() error { return r.ApplyDeployment("old", man) },
	}
	filler := filepath.Join(mnt, "filler")
	// Room for one record file (4 KiB) or two: enough for part of the write.
	rooms := map[string][]int64{"create device": {0, 4096}, "create module": {0}, "apply deployment": {0, 4096, 8192}}
	for _, name := range []string{"create device", "create module", "apply deployment"} {
		for _, room := range rooms[name] {
			before := keys(t, st)
			fulldisk.Fill(t, filler, room)
			err := writes[name]()
			var se *store.SpaceError
			if !errors.As(err, &se) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("%s on a full disk (room %d): %v, want a SpaceError", name, room, err)
			}
			if after := keys(t, st); !slices.Equal(before, after) {
				t.Fatalf("%s on a full disk (room %d) changed the store: %v, was %v", name, room, after, before)
			}
			os.Remove(filler)
		}
		if err := writes[name](); err != nil {
			t.Fatalf("%s retried with space: %v", name, err)
		}
	}
	if _, err := r.GetModule("new", AgentModule); err != nil {
		t.Fatalf("the new device's agent module: %v", err)
	}
	if tw, err := r.GetTwin("old", "web"); err != nil || string(tw.DesiredJSON()) != `{"a":1}` {
		t.Fatalf("the deployed module's twin: %v", err)
	}
	if _, err := r.GetModule("old", "m"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the module the deployment dropped: %v", err)
	}
}

// TestDeleteDeviceClearsSyncRecord checks that a device's delete takes the hub's sync
// record of it along, so that a device created again under its id starts afresh.
func TestDeleteDeviceClearsSyncRecord(t *testing.T) {
	r, _ := newRegistry(t)
	if _, err := r.CreateDevice(Device{DeviceID: "d"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.st.Put(DeviceSyncKey("d"), []byte(`{"reportedSeq":42}`), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.UpdateTwin("d", "", "", func(tw *twin.Twin) (bool, error) { return tw.PatchDesired([]byte(`{"x":1}`), r.now()) }); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteDevice("d", ""); err != nil {
		t.Fatal(err)
	}
	if left := keys(t, r.st); len(left) != 0 {
		t.Fatalf("left after the device's delete: %v", left)
	}
}
