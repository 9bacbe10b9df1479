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

// TestListPrefixAfterReopen lists a file store opened again as the suite
// lists the open one: from its files and index as read back.
func TestListPrefixAfterReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	storetest.FillListPrefix(t, s)
	storetest.CheckListPrefix(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = store.Open(dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.CheckListPrefix(t, s)
}
