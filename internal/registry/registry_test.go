package registry

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

func newRegistry(t *testing.T) (*Registry, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return New(st), dir
}

func TestDeviceLifecycle(t *testing.T) {
	r, _ := newRegistry(t)
	d, err := r.CreateDevice(Device{DeviceID: "dev-1"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != "enabled" || d.ETag == "" || d.GenerationID == "" || d.Authentication.Type != "sas" {
		t.Fatalf("created device: %+v", d)
	}
	k := d.Authentication.SymmetricKey
	if k.PrimaryKey == "" || k.SecondaryKey == "" || k.PrimaryKey == k.SecondaryKey {
		t.Fatalf("keys not generated: %+v", k)
	}
	if _, err := r.CreateDevice(Device{DeviceID: "dev-1"}); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v", err)
	}
	if _, err := r.CreateDevice(Device{DeviceID: "bad id"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid id: %v", err)
	}
	if _, err := r.CreateDevice(Device{DeviceID: "x", Status: "sleeping"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid status: %v", err)
	}
	if _, err := r.CreateDevice(Device{DeviceID: "x", Authentication: &Authentication{Type: "sas", SymmetricKey: &SymmetricKey{PrimaryKey: "not base64!"}}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid key: %v", err)
	}

	got, err := r.GetDevice("dev-1")
	if err != nil || got.ETag != d.ETag || got.Authentication.SymmetricKey.PrimaryKey != k.PrimaryKey {
		t.Fatalf("get: %+v, %v", got, err)
	}

	d.Status = "disabled"
	upd, err := r.UpdateDevice(d, d.ETag)
	if err != nil || upd.Status != "disabled" || upd.ETag == d.ETag || upd.GenerationID != d.GenerationID {
		t.Fatalf("update: %+v, %v", upd, err)
	}
	if _, err := r.UpdateDevice(d, d.ETag); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("update with stale etag: %v", err)
	}
	if _, err := r.UpdateDevice(Device{DeviceID: "nope"}, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update missing: %v", err)
	}

	if err := r.DeleteDevice("dev-1", d.ETag); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("delete with stale etag: %v", err)
	}
	if err := r.DeleteDevice("dev-1", upd.ETag); err != nil {
		t.Fatal(err)
	}
	if _, err := r.GetDevice("dev-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if err := r.DeleteDevice("dev-1", ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestListDevicesPages(t *testing.T) {
	r, _ := newRegistry(t)
	for i := range 25 {
		if _, err := r.CreateDevice(Device{DeviceID: fmt.Sprintf("d%02d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var all []string
	next, pages := "", 0
	for {
		page, n, err := r.ListDevices(next, 10)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, d := range page {
			all = append(all, d.DeviceID)
		}
		if n == "" {
			break
		}
		next = n
	}
	if len(all) != 25 || pages != 3 || all[0] != "d00" || all[24] != "d24" {
		t.Fatalf("paged %d devices in %d pages: %v", len(all), pages, all)
	}
	whole, next, err := r.ListDevices("", 0)
	if err != nil || len(whole) != 25 || next != "" {
		t.Fatalf("unpaged: %d, %q, %v", len(whole), next, err)
	}
}

func TestModulesAndCascade(t *testing.T) {
	r, _ := newRegistry(t)
	if _, err := r.CreateModule(Module{DeviceID: "ghost", ModuleID: "m"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("module on a missing device: %v", err)
	}
	if _, err := r.CreateDevice(Device{DeviceID: "d"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateDevice(Device{DeviceID: "d2"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"b", "a"} {
		if _, err := r.CreateModule(Module{DeviceID: "d", ModuleID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.CreateModule(Module{DeviceID: "d2", ModuleID: "a", ManagedBy: "outpost"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateModule(Module{DeviceID: "d", ModuleID: "a"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate module: %v", err)
	}
	if _, err := r.CreateModule(Module{DeviceID: "d", ModuleID: "a/b"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid module id: %v", err)
	}
	mods, err := r.ListModules("d")
	if err != nil || len(mods) != 4 || mods[0].ModuleID != "$edgeAgent" || mods[1].ModuleID != "$edgeHub" || mods[2].ModuleID != "a" {
		t.Fatalf("list: %+v, %v", mods, err)
	}
	m2, err := r.GetModule("d2", "a")
	if err != nil || m2.ManagedBy != "outpost" {
		t.Fatalf("get: %+v %v", m2, err)
	}
	if _, err := r.UpdateTwin("d", "a", "", func(tw *twin.Twin) (bool, error) {
		return tw.PatchDesired([]byte(`{"x":1}`), time.Now())
	}); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteDevice("d", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.GetModule("d", "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("module after device delete: %v", err)
	}
	if _, err := r.GetTwin("d", "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("twin after device delete: %v", err)
	}
	// The other device is untouched.
	if mods, err := r.ListModules("d2"); err != nil || len(mods) != 3 { // a, $edgeAgent and $edgeHub
		t.Fatalf("d2 modules: %v %v", mods, err)
	}
	// Recreating the device does not resurrect the old twin.
	if _, err := r.CreateDevice(Device{DeviceID: "d"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateModule(Module{DeviceID: "d", ModuleID: "a"}); err != nil {
		t.Fatal(err)
	}
	tw, err := r.GetTwin("d", "a")
	if err != nil || len(tw.Desired()) != 0 {
		t.Fatalf("recreated twin: %v %v", tw.Desired(), err)
	}
	// A stale etag deletes nothing, the twin included.
	if _, err := r.UpdateTwin("d", "a", "", func(tw *twin.Twin) (bool, error) {
		return tw.PatchDesired([]byte(`{"keep":1}`), time.Now())
	}); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteModule("d", "a", ETagOf(1)); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("delete with a stale etag: %v", err)
	}
	if tw, err := r.GetTwin("d", "a"); err != nil || string(tw.DesiredJSON()) != `{"keep":1}` {
		t.Fatalf("twin after a refused delete: %v", err)
	}
	if err := r.DeleteModule("d", "a", ""); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteModule("d", "a", ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second module delete: %v", err)
	}
}

func TestTwinUpdates(t *testing.T) {
	r, dir := newRegistry(t)
	if _, err := r.CreateDevice(Device{DeviceID: "d"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.GetTwin("d", "m"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("twin of a missing module: %v", err)
	}
	if _, err := r.CreateModule(Module{DeviceID: "d", ModuleID: "m"}); err != nil {
		t.Fatal(err)
	}
	tw, err := r.GetTwin("d", "m")
	if err != nil || tw.Version != 1 {
		t.Fatalf("fresh twin: %v %v", tw, err)
	}
	patch := func(etag, body string) (*twin.Twin, error) {
		return r.UpdateTwin("d", "m", etag, func(tw *twin.Twin) (bool, error) {
			return tw.PatchDesired([]byte(body), time.Now())
		})
	}
	t1, err := patch("", `{"a":1}`)
	if err != nil || t1.DesiredVersion() != 2 {
		t.Fatalf("patch: %v %v", t1, err)
	}
	if _, err := patch(tw.ETag, `{"a":2}`); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("stale etag: %v", err)
	}
	t2, err := patch(`"`+t1.ETag+`"`, `{"a":2}`)
	if err != nil || t2.DesiredVersion() != 3 {
		t.Fatalf("quoted current etag: %v %v", t2, err)
	}
	if _, err := patch("", `{"a.b":1}`); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid patch: %v", err)
	}
	// A rejected patch leaves the stored twin as it was.
	got, _ := r.GetTwin("d", "m")
	if got.ETag != t2.ETag {
		t.Fatalf("twin changed by a rejected patch: %s → %s", t2.ETag, got.ETag)
	}
	// Device twins work the same way.
	if _, err := r.UpdateTwin("d", "", "", func(tw *twin.Twin) (bool, error) {
		return tw.PatchTags([]byte(`{"site":"north"}`), time.Now())
	}); err != nil {
		t.Fatal(err)
	}

	// Reopen: everything is still there.
	r.st.Close()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r = New(st)
	got, err = r.GetTwin("d", "m")
	if err != nil || got.ETag != t2.ETag || string(got.DesiredJSON()) != `{"a":2}` {
		t.Fatalf("after reopen: %v %s", err, got.DesiredJSON())
	}
	dt, err := r.GetTwin("d", "")
	if err != nil || string(dt.TagsJSON()) != `{"site":"north"}` {
		t.Fatalf("device twin after reopen: %v", err)
	}
}

// TestConcurrentTwinPatches checks that concurrent writers without an etag
// all land: the compare-and-swap loop retries instead of losing writes.
func TestConcurrentTwinPatches(t *testing.T) {
	r, _ := newRegistry(t)
	if _, err := r.CreateDevice(Device{DeviceID: "d"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateModule(Module{DeviceID: "d", ModuleID: "m"}); err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				body := fmt.Sprintf(`{"w%d":%d}`, w, i)
				if _, err := r.UpdateTwin("d", "m", "", func(tw *twin.Twin) (bool, error) {
					return tw.PatchReported([]byte(body), time.Now())
				}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	tw, err := r.GetTwin("d", "m")
	if err != nil {
		t.Fatal(err)
	}
	if got := tw.ReportedVersion(); got != 1+writers*each {
		t.Fatalf("reported $version %d, want %d: writes were lost", got, 1+writers*each)
	}
	if n := len(tw.Reported()); n != writers {
		t.Fatalf("reported has %d keys, want %d", n, writers)
	}
}
