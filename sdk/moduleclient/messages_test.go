package moduleclient_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/sdk/moduleclient"
)

// deployRoutes deploys module m again, with routes.
func (d *device) deployRoutes(t testing.TB, routes map[string]any) {
	t.Helper()
	d.f.DeployManifest(t, map[string]any{"schemaVersion": "1.0",
		"modules": map[string]any{d.module: map[string]any{"image": d.f.Image, "restartPolicy": "always"}},
		"routes":  routes})
}

// inbox collects what OnInput delivers.
type inbox struct {
	mu   sync.Mutex
	msgs []moduleclient.Message
}

func (b *inbox) add(m moduleclient.Message) { b.mu.Lock(); b.msgs = append(b.msgs, m); b.mu.Unlock() }

func (b *inbox) snapshot() []moduleclient.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]moduleclient.Message(nil), b.msgs...)
}

// hubMessages reads every message the hub keeps for the device.
func (d *device) hubMessages(t testing.TB) []hubapi.Message {
	t.Helper()
	var out []hubapi.Message
	var after uint64
	for {
		list, err := d.f.Owner.Messages(t.Context(), d.f.DeviceID, "", after, 10000, 0)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, list.Messages...)
		if len(list.Messages) == 0 {
			return out
		}
		after = list.Next
	}
}

// TestOutputsRoutedToInputAndHub: the Go SDK sends on an output; a route
// with a WHERE clause brings it to an input, another route to the hub.
func TestOutputsRoutedToInputAndHub(t *testing.T) {
	d, l := newFixture(t)
	d.deployRoutes(t, map[string]any{
		"hot": `FROM /messages/modules/m/outputs/out1 WHERE temperature > 30 INTO BrokeredEndpoint("/modules/m/inputs/alerts")`,
		"up":  map[string]any{"route": "FROM /messages/modules/m/* INTO $upstream", "priority": 1},
	})
	d.start(t, l)
	c := d.connect(t)
	var got inbox
	if err := c.OnInput("alerts", got.add); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for i, temp := range []string{"35", "20", "31.5"} {
		msg := moduleclient.Message{Body: []byte(`{"t":` + temp + `}`), Properties: map[string]string{"temperature": temp, "site": "north yard"},
			MessageID: "m" + strconv.Itoa(i), ContentType: "application/json", ContentEncoding: "utf-8"}
		if err := c.SendOutput(ctx, "out1", msg); err != nil {
			t.Fatal(err)
		}
	}
	agenttest.Eventually(t, 60*time.Second, "two alerts at the input", func() bool { return len(got.snapshot()) >= 2 })
	msgs := got.snapshot()
	if len(msgs) != 2 || msgs[0].MessageID != "m0" || msgs[1].MessageID != "m2" {
		t.Fatalf("alerts %+v, want m0 and m2", msgs)
	}
	m := msgs[0]
	if m.Input != "alerts" || m.OutputName != "out1" || m.ConnectionModuleID != "m" || m.To != "/devices/"+d.f.DeviceID+"/modules/m/inputs/alerts" ||
		m.Properties["site"] != "north yard" || m.ContentType != "application/json" || string(m.Body) != `{"t":35}` {
		t.Fatalf("alert %+v", m)
	}
	agenttest.Eventually(t, 60*time.Second, "the three messages at the hub", func() bool { return len(d.hubMessages(t)) == 3 })
	hm := d.hubMessages(t)
	if hm[0].ModuleID != "m" || hm[0].OutputName != "out1" || hm[0].Properties["temperature"] != "35" || hm[2].SystemProperties["$.mid"] != "m2" {
		t.Fatalf("at the hub: %+v", hm)
	}
	if err := c.SendOutput(ctx, "out1", moduleclient.Message{Properties: map[string]string{"$.mid": "x"}}); err == nil {
		t.Fatal("a $. application property was sent")
	}
}

// TestMessagesOfflineKill9: with the hub down, 10,000 messages routed to
// the hub and to an input; the input gets them at once; the daemon is
// kill -9ed and started again; once the hub is back all 10,000 reach it
// in order. Messages of a route with a 1 s time to live are counted as
// expired.
func TestMessagesOfflineKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 messages through a daemon binary")
	}
	bin := buildOutpost(t)
	d, l := newFixture(t)
	l.Close()
	d.deployRoutes(t, map[string]any{
		"in":    `FROM /messages/modules/m/outputs/out1 INTO BrokeredEndpoint("/modules/m/inputs/in1")`,
		"up":    `FROM /messages/modules/m/outputs/out1 INTO $upstream`,
		"short": map[string]any{"route": "FROM /messages/modules/m/outputs/short INTO $upstream", "timeToLiveSecs": 1},
	})
	log, err := os.Create(filepath.Join(t.TempDir(), "daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("daemon log:\n%s", b)
		}
	}()
	daemon := d.startBinary(t, bin, log)
	c := d.connect(t)
	var got inbox
	if err := c.OnInput("in1", got.add); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	hubData, hubAddr := d.f.Hub.DataDir, d.f.Hub.Addr().String()
	d.f.Hub.Stop()

	const n = 10000
	for i := range n {
		msg := moduleclient.Message{Body: fmt.Appendf(nil, `{"n":%d}`, i), Properties: map[string]string{"n": strconv.Itoa(i)}}
		if err := c.SendOutput(ctx, "out1", msg); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	for range 5 {
		if err := c.SendOutput(ctx, "short", moduleclient.Message{Body: []byte("stale")}); err != nil {
			t.Fatal(err)
		}
	}
	agenttest.Eventually(t, 120*time.Second, "all 10,000 at the input while the hub is down", func() bool { return len(got.snapshot()) >= n })
	checkInOrder(t, "input", n, func(yield func(string) bool) {
		for _, m := range got.snapshot() {
			if !yield(m.Properties["n"]) {
				return
			}
		}
	})

	// For docs/benchmarks.md: the daemon's peak RSS after routing 10,000.
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", daemon.Process.Pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "VmHWM:") || strings.HasPrefix(line, "VmRSS:") {
				t.Logf("daemon after routing %d messages: %s", n, strings.Join(strings.Fields(line), " "))
			}
		}
	}
	if err := daemon.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = daemon.Wait()
	d.startBinary(t, bin, log)
	mc := mgmtclient.New(d.mgmtSocket)
	agenttest.Eventually(t, 60*time.Second, "the 5 short-lived messages counted as expired", func() bool {
		st, err := mc.Status(ctx)
		return err == nil && st.Messages != nil && st.Messages.Upstream.Expired == 5 && st.Messages.Upstream.Count == n
	})

	d.f.Hub = hubtest.Start(t, hubtest.Options{DataDir: hubData, Listen: hubAddr})
	d.f.Owner = d.f.Hub.Client(t)
	drained := agenttest.Eventually(t, 120*time.Second, "all 10,000 at the hub", func() bool {
		st, err := mc.Status(ctx)
		return err == nil && st.Messages.Upstream.Count == 0
	})
	t.Logf("upstream drain of %d after the hub came back: %s (reconnect back-off included)", n, drained.Round(time.Millisecond))
	hm := d.hubMessages(t)
	checkInOrder(t, "hub", n, func(yield func(string) bool) {
		for _, m := range hm {
			if !yield(m.Properties["n"]) {
				return
			}
		}
	})
	for _, m := range hm {
		if string(m.Body) == "stale" {
			t.Fatal("an expired message reached the hub")
		}
	}
}

// checkInOrder checks that the n values seen are 0…count-1 in order, each
// at least once: a value seen again (at-least-once redelivery) may only
// repeat one seen before, never skip ahead.
func checkInOrder(t *testing.T, where string, count int, seq func(func(string) bool)) {
	t.Helper()
	next, dups := 0, 0
	for v := range seq {
		i, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("%s: n=%q", where, v)
		}
		switch {
		case i == next:
			next++
		case i < next:
			dups++
		default:
			t.Fatalf("%s: n=%d came before n=%d", where, i, next)
		}
	}
	if next != count {
		t.Fatalf("%s: got 0…%d, want 0…%d", where, next-1, count-1)
	}
	t.Logf("%s: all %d in order, %d redelivered", where, count, dups)
}
