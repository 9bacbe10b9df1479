package hub_test

import (
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/store/etcdstore/etcdtest"
)

// TestMigrateToEtcd copies a file-store hub into etcd twice (the second run
// copies nothing), verifies it, and serves it from a replica: same owner key,
// same CA, same devices.
func TestMigrateToEtcd(t *testing.T) {
	hubtest.FileStoreOnly(t)
	dir := t.TempDir()
	old := hubtest.Start(t, hubtest.Options{DataDir: dir})
	owner := old.Client(t)
	for _, id := range []string{"d1", "d2", "d3"} {
		if _, err := owner.CreateDevice(ctx, hubapi.Device{DeviceID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := owner.PatchTwin(ctx, "d2", "", []byte(`{"tags":{"site":"a"}}`), ""); err != nil {
		t.Fatal(err)
	}
	ownerCS, oldCA := old.ConnectionString, old.CAFile
	old.Stop()

	c := etcdtest.Start(t, 1)
	st := c.OpenPrefix(t, "/hub")
	first, err := hub.MigrateStore(dir, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if first.Records == 0 || first.Copied != first.Records || first.Already != 0 || !first.CA {
		t.Fatalf("first migration: %+v, want every record copied and the CA", first)
	}
	again, err := hub.MigrateStore(dir, st, nil)
	if err != nil || again.Copied != 0 || again.Already != first.Records {
		t.Fatalf("second migration: %+v %v, want nothing copied, %d there already", again, err, first.Records)
	}
	if v, err := hub.VerifyMigration(dir, st); err != nil || !v.OK() || v.Records != first.Records {
		t.Fatalf("verify: %+v %v", v, err)
	}
	if _, err := st.Put("devices/d1", []byte(`{"deviceId":"d1","changed":true}`), -1); err != nil {
		t.Fatal(err)
	}
	if v, err := hub.VerifyMigration(dir, st); err != nil || v.OK() || len(v.Different) != 1 || v.Different[0] != "devices/d1" {
		t.Fatalf("verify after a change in etcd: %+v %v, want devices/d1 different", v, err)
	}
	if res, err := hub.MigrateStore(dir, st, nil); err != nil || res.Copied != 1 {
		t.Fatalf("migration after a change in etcd: %+v %v, want devices/d1 copied again", res, err)
	}

	r := hubtest.Start(t, hubtest.Options{Store: st, HostName: old.HostName()})
	if r.ConnectionString != ownerCS {
		t.Fatalf("replica's owner connection string %s, want the migrated hub's %s", r.ConnectionString, ownerCS)
	}
	a, _ := os.ReadFile(oldCA)
	b, _ := os.ReadFile(r.CAFile)
	if string(a) != string(b) {
		t.Fatal("the replica serves from a CA other than the migrated hub's")
	}
	tw, err := via(t, r, ownerCS).GetTwin(ctx, "d2", "")
	if err != nil || string(tw.TagsJSON()) != `{"site":"a"}` {
		t.Fatalf("d2 through the replica: %v %v", tw, err)
	}

	// Status and probes.
	s, err := via(t, r, ownerCS).Status(ctx)
	if err != nil || s.Store != "etcd" || !s.Ready || s.Revision == 0 || len(s.Members) != 1 || !s.Members[0].Healthy || s.Prefix != "/hub/" {
		t.Fatalf("status: %+v %v", s, err)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := r.Request(t, http.MethodGet, path, "", "", nil); code != http.StatusOK {
			t.Errorf("GET %s: %d %s", path, code, body)
		}
	}
	c.Stop(0)
	// Noticed by the background probes: at once if etcd refuses, within
	// probeStale (10 s) if requests time out.
	if body := waitReadyz(t, r, http.StatusServiceUnavailable); !strings.Contains(body, "etcd") {
		t.Errorf("GET /readyz with etcd down: %q, want it to name etcd", body)
	}
	if code, _ := r.Request(t, http.MethodGet, "/healthz", "", "", nil); code != http.StatusOK {
		t.Errorf("GET /healthz with etcd down: %d, want 200", code)
	}
}
