package hubtest

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"testing"

	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/store/etcdstore/etcdtest"
)

// testStore is the store a test's hub gets by default: nil (its data dir's file
// store), or with OUTPOST_TEST_STORE=etcd a store of its own on etcd, so that
// `OUTPOST_TEST_STORE=etcd go test ./internal/hub/...` runs the hub's suite on etcd.
// The store's prefix is the data dir's, so that a hub started again on the same
// data dir finds its records.
func testStore(t testing.TB, dataDir string) store.Store {
	t.Helper()
	switch v := os.Getenv("OUTPOST_TEST_STORE"); v {
	case "", "file":
		return nil
	case "etcd":
		sum := sha256.Sum256([]byte(dataDir))
		s, err := etcdtest.OpenShared("/hub-" + hex.EncodeToString(sum[:8]))
		if err != nil {
			t.Fatalf("OUTPOST_TEST_STORE=etcd: %v", err)
		}
		return s
	default:
		t.Fatalf("OUTPOST_TEST_STORE=%q: want file or etcd", v)
		return nil
	}
}

// FileStoreOnly skips a test that works on the file store's files (a full disk,
// an old data dir, a restored backup) when the suite runs on etcd.
func FileStoreOnly(t testing.TB) {
	t.Helper()
	if os.Getenv("OUTPOST_TEST_STORE") == "etcd" {
		t.Skip("works on the file store's files; OUTPOST_TEST_STORE=etcd")
	}
}
