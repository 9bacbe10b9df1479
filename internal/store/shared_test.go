package store

import (
	"bytes"
	"errors"
	"testing"
)

func TestListSharedGetSharedAndSharedValue(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v1, err := s.Put("twins/a", []byte(`{"n":1}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put("twins/b", []byte(`{"n":2}`), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put("other/c", []byte(`{}`), 0); err != nil {
		t.Fatal(err)
	}
	shared, err := s.ListShared("twins/")
	if err != nil {
		t.Fatal(err)
	}
	copied, _ := s.List("twins/")
	if len(shared) != 2 || len(copied) != 2 {
		t.Fatalf("ListShared %d records, List %d", len(shared), len(copied))
	}
	for i := range shared {
		if shared[i].Key != copied[i].Key || shared[i].Version != copied[i].Version || !bytes.Equal(shared[i].Value, copied[i].Value) {
			t.Errorf("ListShared %+v, List %+v", shared[i], copied[i])
		}
	}
	// The store's own bytes: the same slice every time, and a write installs a new one.
	again, _ := s.ListShared("twins/a")
	if &again[0].Value[0] != &shared[0].Value[0] {
		t.Error("ListShared copied the value")
	}
	if b, ok := s.SharedValue("twins/a", v1); !ok || &b[0] != &shared[0].Value[0] {
		t.Errorf("SharedValue at the current version: %q, %v", b, ok)
	}
	if r, err := s.GetShared("twins/a"); err != nil || r.Version != v1 || &r.Value[0] != &shared[0].Value[0] {
		t.Errorf("GetShared: %+v, %v", r, err)
	}
	v2, err := s.Put("twins/a", []byte(`{"n":3}`), v1)
	if err != nil {
		t.Fatal(err)
	}
	if string(shared[0].Value) != `{"n":1}` {
		t.Errorf("a write changed the bytes ListShared gave: %s", shared[0].Value)
	}
	if _, ok := s.SharedValue("twins/a", v1); ok {
		t.Error("SharedValue answered for a version that is gone")
	}
	if b, ok := s.SharedValue("twins/a", v2); !ok || string(b) != `{"n":3}` {
		t.Errorf("SharedValue at v2: %q, %v", b, ok)
	}
	if r, err := s.GetShared("twins/a"); err != nil || r.Version != v2 || string(r.Value) != `{"n":3}` {
		t.Errorf("GetShared after a write: %+v, %v", r, err)
	}
	if _, err := s.GetShared("twins/none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetShared of a missing key: %v", err)
	}
	if _, ok := s.SharedValue("twins/none", 1); ok {
		t.Error("SharedValue of a missing key")
	}
	s.Close()
	if _, err := s.GetShared("twins/a"); err != ErrClosed {
		t.Errorf("GetShared after Close: %v", err)
	}
	if _, err := s.ListShared("twins/"); err != ErrClosed {
		t.Errorf("ListShared after Close: %v", err)
	}
}
