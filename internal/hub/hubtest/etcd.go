package hubtest

import (
	"os"
	"testing"

	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/store/etcdstore/etcdtest"
)

// testStore is the store a test's hub gets by default: nil (its data dir's file
// store), or with OUTPOST_TEST_STORE=etcd a store of its own on etcd, so that
// `OUTPOST_TEST_STORE=etcd go test ./internal/hub/...` runs the hub's suite on etcd.
func testStore(t testing.TB) store.Store {
	t.Helper()
	switch v := os.Getenv("OUTPOST_TEST_STORE"); v {
	case "", "file":
		return nil
	case "etcd":
		s, err := etcdtest.OpenShared()
		if err != nil {
			t.Fatalf("OUTPOST_TEST_STORE=etcd: %v", err)
		}
		return s
	default:
		t.Fatalf("OUTPOST_TEST_STORE=%q: want file or etcd", v)
		return nil
	}
}
