package hub_test

import (
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/fulldisk"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/store/etcdstore/etcdtest"
)

// slowStore answers the readiness probe's read (the owner policy) late once
// slow is set, as a store (or a hub) too busy to answer at once does; it
// answers every time.
type slowStore struct {
	store.Store
	slow  atomic.Bool
	calls atomic.Int64
}

const slowProbe = 3 * time.Second // more than the 2 s /readyz gave the store before

func (s *slowStore) Get(key string) (store.Record, error) {
	if key == "policies/owner" && s.slow.Load() {
		s.calls.Add(1)
		time.Sleep(slowProbe)
	}
	return s.Store.Get(key)
}

// waitReadyz asks /readyz until it answers want (within a minute), and
// returns its body.
func waitReadyz(t *testing.T, h *hubtest.Hub, want int) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		code, body := h.Request(t, http.MethodGet, "/readyz", "", "", nil)
		if code == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %q after a minute, want %d", code, body, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestReadyzBusyStore: a store that answers, only late, keeps the hub
// ready: /readyz answers from the probes that run in the background, and
// a probe that takes longer than the 2 s /readyz used to give it is not a
// failure. (A replica busy with 10,000 connecting devices was marked down
// by HAProxy this way, and refused every new connection for half a minute.)
func TestReadyzBusyStore(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	busyStaysReady(t, st)
}

// busyStaysReady starts a hub on st, makes its probes slow and checks
// that /readyz and the status say ready through three of them.
func busyStaysReady(t *testing.T, st store.Store) *hubtest.Hub {
	t.Helper()
	slow := &slowStore{Store: st}
	h := hubtest.Start(t, hubtest.Options{Store: slow})
	waitReadyz(t, h, http.StatusOK)
	slow.slow.Store(true)
	// Ask through two slow probes and more: every answer is 200.
	for slow.calls.Load() < 3 {
		if code, body := h.Request(t, http.MethodGet, "/readyz", "", "", nil); code != http.StatusOK {
			t.Fatalf("/readyz with a store answering in %s: %d %s, want 200", slowProbe, code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	s, err := h.Client(t).Status(t.Context())
	if err != nil || !s.Ready {
		t.Fatalf("status with a slow store: %+v %v, want ready", s, err)
	}
	slow.slow.Store(false)
	return h
}

// TestReadyzEtcd: on etcd (an embedded member), a slow store keeps the
// replica ready; with the member stopped /readyz answers 503 naming etcd,
// and 200 again once it is back.
func TestReadyzEtcd(t *testing.T) {
	c := etcdtest.Start(t, 1)
	h := busyStaysReady(t, c.OpenPrefix(t, "/readyz"))
	c.Stop(0)
	if body := waitReadyz(t, h, http.StatusServiceUnavailable); !strings.Contains(body, "etcd") {
		t.Errorf("/readyz with etcd down: %q, want it to name etcd", body)
	}
	c.Restart(0)
	c.Wait()
	waitReadyz(t, h, http.StatusOK)
}

// TestReadyzFileStoreUnwritable: a hub whose store becomes read-only (a
// read-only bind mount on a real tmpfs) answers 503 naming its records directory, and
// 200 again once the data dir takes writes; /healthz stays 200.
func TestReadyzFileStoreUnwritable(t *testing.T) {
	hubtest.FileStoreOnly(t)
	mnt := fulldisk.Mount(t, "8m")
	data := filepath.Join(mnt, "hub")
	h := hubtest.Start(t, hubtest.Options{DataDir: data})
	waitReadyz(t, h, http.StatusOK)

	// A read-only bind mount over the records directory: what the hub opens
	// from now on is read-only, its open files stay as they were (a remount
	// of the whole tmpfs is refused while they are open for writing).
	records := filepath.Join(data, "store", "records")
	mount := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			t.Fatalf("mount %v: %v %s", args, err, out)
		}
	}
	mount("--bind", records, records)
	unmounted := false
	unmount := func() {
		if !unmounted {
			unmounted = true
			exec.Command("umount", records).Run()
		}
	}
	t.Cleanup(unmount)
	mount("-o", "remount,bind,ro", records)
	body := waitReadyz(t, h, http.StatusServiceUnavailable)
	if !strings.Contains(body, records) || !strings.Contains(body, "takes no new file") {
		t.Errorf("/readyz on a read-only data dir: %q, want it to name %s", body, records)
	}
	if code, _ := h.Request(t, http.MethodGet, "/healthz", "", "", nil); code != http.StatusOK {
		t.Errorf("/healthz on a read-only data dir: %d, want 200", code)
	}
	unmount()
	waitReadyz(t, h, http.StatusOK)
}
