package hub

import (
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/store"
)

// TestOrderedStoreLendsRecords: the file store wrapped to follow its writes
// still lends its own copy of a record (GetShared), through the wrapper and
// through the query index's wrapper on top, as the registry reads
// identities: a wrapper that hid it made every identity read copy.
func TestOrderedStoreLendsRecords(t *testing.T) {
	fs, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if _, err := fs.Put("devices/d1", []byte(`{"deviceId":"d1"}`), 0); err != nil {
		t.Fatal(err)
	}
	st, order := orderWrites(fs)
	if order == nil {
		t.Fatal("the file store's writes are not followed")
	}
	type getShared interface {
		GetShared(key string) (store.Record, error)
	}
	for name, s := range map[string]store.Store{"ordered": st, "indexing": indexingStore{st, newTwinIndex(time.Now)}} {
		g, ok := s.(getShared)
		if !ok {
			t.Fatalf("%s: no GetShared", name)
		}
		a, err := g.GetShared("devices/d1")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := fs.GetShared("devices/d1")
		if len(a.Value) == 0 || &a.Value[0] != &b.Value[0] {
			t.Errorf("%s: GetShared gave a copy, not the store's own value", name)
		}
	}
}
