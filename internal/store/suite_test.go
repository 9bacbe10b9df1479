package store_test

import (
	"testing"

	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/store/storetest"
)

// TestSuite runs the suite every backend passes (etcd's runs it too) on the file store.
func TestSuite(t *testing.T) {
	storetest.Run(t, func(t testing.TB) store.Store {
		s, err := store.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
