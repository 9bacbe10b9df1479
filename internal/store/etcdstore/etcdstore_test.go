package etcdstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/store/etcdstore"
	"github.com/outpost-edge/outpost/internal/store/etcdstore/etcdtest"
	"github.com/outpost-edge/outpost/internal/store/storetest"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// TestSuite runs the store suite, unchanged, on etcd.
func TestSuite(t *testing.T) {
	c := etcdtest.Start(t, 1)
	storetest.Run(t, c.Opener())
}

// TestTooLarge checks that a record or Txn etcd would refuse is refused first, saying why.
func TestTooLarge(t *testing.T) {
	c := etcdtest.Start(t, 1)
	s := c.Open(t)
	big := []byte(`"` + strings.Repeat("x", etcdstore.DefaultMaxRequestBytes) + `"`)
	if _, err := s.Put("devices/d1", big, store.Any); !errors.Is(err, store.ErrInvalid) ||
		!strings.Contains(err.Error(), "devices/d1") || !strings.Contains(err.Error(), "--max-request-bytes") {
		t.Fatalf("Put of %d bytes: %v, want ErrInvalid naming the key and etcd's limit", len(big), err)
	}
	ops := make([]store.Op, etcdstore.DefaultMaxTxnOps+1)
	for i := range ops {
		ops[i] = store.PutOp("k/"+strings.Repeat("a", i+1), []byte(`1`), store.Any)
	}
	if _, err := s.Txn(ops...); !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "--max-txn-ops") {
		t.Fatalf("Txn of %d ops: %v, want ErrInvalid naming etcd's limit", len(ops), err)
	}
	if recs, err := s.List(""); err != nil || len(recs) != 0 {
		t.Fatalf("refused writes left %d records (%v)", len(recs), err)
	}
}

// TestNoEndpoints checks the errors of a bad --etcd-endpoints.
func TestNoEndpoints(t *testing.T) {
	if _, err := etcdstore.Open(etcdstore.Config{}); err == nil || !strings.Contains(err.Error(), "--etcd-endpoints") {
		t.Fatalf("no endpoints: %v", err)
	}
	if _, err := etcdstore.Open(etcdstore.Config{Endpoints: []string{"http://a:1 http://b:2"}}); err == nil || !strings.Contains(err.Error(), "separated by commas") {
		t.Fatalf("endpoints with a space: %v", err)
	}
}

// TestUnavailableMessage: a request that ran out of time does not claim a lost
// quorum (a replica short of CPU times out with etcd healthy); one etcd refused
// for want of a leader does.
func TestUnavailableMessage(t *testing.T) {
	late := (&etcdstore.UnavailableError{Op: "put twins/d", Endpoints: []string{"http://e1:2379"}, Timeout: 5 * time.Second, Err: context.DeadlineExceeded}).Error()
	for _, want := range []string{"put twins/d", "etcd is unavailable or slow", "within 5s", "no quorum", "too busy", "this machine's load"} {
		if !strings.Contains(late, want) {
			t.Errorf("deadline: %q lacks %q", late, want)
		}
	}
	noLeader := (&etcdstore.UnavailableError{Op: "get devices/d", Endpoints: []string{"http://e1:2379"}, Timeout: 5 * time.Second, Err: rpctypes.ErrNoLeader}).Error()
	for _, want := range []string{"get devices/d", "etcd is unavailable", "until a quorum of etcd members (http://e1:2379) answers again"} {
		if !strings.Contains(noLeader, want) {
			t.Errorf("no leader: %q lacks %q", noLeader, want)
		}
	}
	if strings.Contains(noLeader, "too busy") {
		t.Errorf("no leader: %q blames load", noLeader)
	}
	if !errors.Is(&etcdstore.UnavailableError{Err: context.DeadlineExceeded}, store.ErrUnavailable) {
		t.Error("not store.ErrUnavailable")
	}
}
