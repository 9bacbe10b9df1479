package hub

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/registry"
)

// queued is how many wait in pool.
func queued(p *slotPool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.waiters)
}

// TestAdmitSyncs: syncs that answer at once are served syncSlots at a
// time, the rest waiting (not refused); long polls are not bounded; one
// whose client went away while it waited is not served.
func TestAdmitSyncs(t *testing.T) {
	var inside, most, served atomic.Int64
	release := make(chan struct{})
	pool := &slotPool{free: syncSlots}
	admitted := admitSyncs(func(w http.ResponseWriter, r *http.Request, _ principal) error {
		n := inside.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		served.Add(1)
		if r.URL.Query().Get("hold") != "" {
			<-release
		}
		inside.Add(-1)
		return nil
	}, pool, time.Minute)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { admitted(w, r, principal{}) }))
	defer srv.Close()
	released := false
	defer func() {
		if !released {
			close(release) // a failed test's held requests end, so that Close returns
		}
	}()
	get := func(ctx context.Context, query string) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+syncPrefix+"/devices/d/sync"+query, nil)
		resp, err := srv.Client().Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET …%s: %s", query, resp.Status)
			}
		}
		return err
	}
	wait := func(cond func() bool, what string) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("after a minute: %s", what)
			}
		}
	}

	// syncSlots first syncs held, then more: they wait.
	errc := make(chan error, syncSlots+3)
	for range syncSlots + 2 {
		go func() { errc <- get(context.Background(), "?hold=1") }()
	}
	wait(func() bool { return inside.Load() == syncSlots }, "the first syncs are not all in")
	// A long poll goes through while the slots are taken.
	if err := get(context.Background(), "?cursor=c&wait=30s"); err != nil {
		t.Fatal(err)
	}
	// One that gives up while it waits is never served.
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() { gone <- get(ctx, "?cursor=c") }()
	wait(func() bool { return queued(pool) == 3 }, "the syncs past the slots do not wait")
	cancel()
	wait(func() bool { return queued(pool) == 2 }, "the sync given up still waits")
	if err := <-gone; err == nil {
		t.Fatal("a sync whose client gave up was answered")
	}
	before := served.Load()
	close(release)
	released = true
	for range syncSlots + 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if m := most.Load(); m != syncSlots+1 { // the slots, and the long poll
		t.Errorf("at most %d requests in at once, want %d (the slots, and the long poll)", m, syncSlots+1)
	}
	if got := served.Load() - before; got != 2 {
		t.Errorf("%d syncs served after the slots were freed, want the 2 that waited (not the one that gave up)", got)
	}
}

// TestUnauthenticatedSyncsTakeNoTurn: with every turn taken, a sync with no
// token or a bad one is refused at once, and a device's own waits its turn:
// requests that are not the device's never stand in its way.
func TestUnauthenticatedSyncsTakeNoTurn(t *testing.T) {
	h, _, err := Open(Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", InsecureHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	d, err := h.reg.CreateDevice(registry.Device{DeviceID: "d"})
	if err != nil {
		t.Fatal(err)
	}
	token, err := identity.NewSAS(h.HostName()+"/devices/d", d.Authentication.SymmetricKey.PrimaryKey, time.Now().Add(time.Hour), "")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h.Handler())
	defer srv.Close()
	hc := srv.Client()
	hc.Timeout = 30 * time.Second // a refusal that waited for a turn would wait for ever here
	get := func(auth string) int {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+hubapi.SyncPath("d"), nil)
		req.Host = h.HostName()
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Error(err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for range syncSlots {
		h.syncSlots.acquire(nil)
	}
	badSig := token[:strings.Index(token, "sig=")+4] + "AAAA" + token[strings.Index(token, "&se="):]
	for _, auth := range []string{"", "SharedAccessSignature sr=x&sig=y&se=1", badSig} {
		if code := get(auth); code != http.StatusUnauthorized {
			t.Errorf("sync with Authorization %q while every turn is taken: %d, want 401 at once", auth, code)
		}
	}
	done := make(chan int, 1)
	go func() { done <- get(token) }()
	for deadline := time.Now().Add(time.Minute); queued(h.syncSlots) != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the device's sync does not wait for its turn")
		}
	}
	h.syncSlots.release()
	if code := <-done; code != http.StatusOK {
		t.Errorf("the device's sync, its turn come: %d", code)
	}
}
