package registry

import (
	"bytes"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

// TestTwinCache checks that the twins the registry keeps decoded are what
// decoding the stored record gives, that a caller changing a twin it got
// does not change the kept one, and that a write made without UpdateTwin
// (a transaction, another replica) is read from the store, not the cache.
func TestTwinCache(t *testing.T) {
	r, _ := newRegistry(t)
	if _, err := r.CreateDevice(Device{DeviceID: "d"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateModule(Module{DeviceID: "d", ModuleID: "m"}); err != nil {
		t.Fatal(err)
	}
	decoded := func() []byte {
		t.Helper()
		rec, err := r.st.Get(twinKey("d", "m"))
		if err != nil {
			t.Fatal(err)
		}
		tw := new(twin.Twin)
		if err := tw.UnmarshalJSON(rec.Value); err != nil {
			t.Fatal(err)
		}
		b, err := tw.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for i, body := range []string{`{"a":1,"b":{"c":"x"}}`, `{"b":{"c":null,"d":[1,2.5,"s"]}}`, `{"a":1e3}`} {
		if _, err := r.UpdateTwin("d", "m", "", func(tw *twin.Twin) (bool, error) {
			return tw.PatchDesired([]byte(body), time.Now())
		}); err != nil {
			t.Fatal(err)
		}
		got, err := r.GetTwin("d", "m")
		if err != nil {
			t.Fatal(err)
		}
		b, err := got.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if want := decoded(); !bytes.Equal(b, want) {
			t.Fatalf("patch %d: twin from the cache\n%s\ndecoded from the store\n%s", i, b, want)
		}
		// The caller's copy is its own.
		got.ETag, got.Version = "changed", 99
		if _, err := got.PatchDesired([]byte(`{"z":1}`), time.Now()); err != nil {
			t.Fatal(err)
		}
		again, _ := r.GetTwin("d", "m")
		if b2, _ := again.MarshalJSON(); !bytes.Equal(b2, b) {
			t.Fatalf("patch %d: a caller's change reached the kept twin:\n%s", i, b2)
		}
	}

	// A write of the record outside UpdateTwin.
	other, _ := r.GetTwin("d", "m")
	if _, err := other.PatchDesired([]byte(`{"from":"elsewhere"}`), time.Now()); err != nil {
		t.Fatal(err)
	}
	b, err := other.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.st.Put(twinKey("d", "m"), b, store.Any); err != nil {
		t.Fatal(err)
	}
	got, err := r.GetTwin("d", "m")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(got.DesiredJSON(), []byte(`"from":"elsewhere"`)) {
		t.Fatalf("a write outside UpdateTwin not seen: %s", got.DesiredJSON())
	}
}
