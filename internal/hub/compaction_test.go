package hub_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/store/etcdstore/etcdtest"
)

// TestCompactionFullResync: a device offline while etcd compacts its history
// past the device's cursor gets a full sync when it comes back, and converges.
func TestCompactionFullResync(t *testing.T) {
	c := etcdtest.Start(t, 1)
	hs := startReplicas(t, c, 1)
	st := c.OpenPrefix(t, "/hub")
	owner := via(t, hs[0], hs[0].ConnectionString)
	d, err := owner.CreateDevice(ctx, hubapi.Device{DeviceID: "d"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := owner.CreateModule(ctx, hubapi.Module{DeviceID: "d", ModuleID: "m"}); err != nil {
		t.Fatal(err)
	}
	dev := via(t, hs[0], hs[0].DeviceConnectionString("d", "", d.Authentication.SymmetricKey.PrimaryKey))
	s, err := dev.Sync(ctx, "d", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	// Without compaction an old cursor syncs incrementally.
	if _, err := owner.PatchTwin(ctx, "d", "m", []byte(`{"properties":{"desired":{"n":0}}}`), ""); err != nil {
		t.Fatal(err)
	}
	if inc, err := dev.Sync(ctx, "d", s.Cursor, 0); err != nil || inc.Full {
		t.Fatalf("sync before compaction: full=%v %v, want incremental", inc != nil && inc.Full, err)
	}
	// The device is offline: twins change, etcd compacts.
	for i := 1; i <= 20; i++ {
		if _, err := owner.PatchTwin(ctx, "d", "m", []byte(`{"properties":{"desired":{"n":`+strconv.Itoa(i)+`}}}`), ""); err != nil {
			t.Fatal(err)
		}
	}
	rev, err := st.Revision()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Client().Compact(context.Background(), rev); err != nil {
		t.Fatal(err)
	}
	back, err := dev.Sync(ctx, "d", s.Cursor, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Full || desiredN(t, back) != 20 {
		t.Fatalf("sync after compaction: full=%v n=%d, want a full sync with n=20", back.Full, desiredN(t, back))
	}
	// From the new cursor it is incremental again.
	if _, err := owner.PatchTwin(ctx, "d", "m", []byte(`{"properties":{"desired":{"n":21}}}`), ""); err != nil {
		t.Fatal(err)
	}
	if next, err := dev.Sync(ctx, "d", back.Cursor, 0); err != nil || next.Full || desiredN(t, next) != 21 {
		t.Fatalf("sync after the full one: %+v %v, want incremental with n=21", next, err)
	}
}
