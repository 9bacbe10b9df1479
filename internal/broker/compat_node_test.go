package broker

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/sdktest"
)

// TestNodeModuleSDK runs Microsoft's Node.js module SDK (azure-iot-device
// with azure-iot-device-mqtt, unmodified; compat/node/module.js) against
// the broker: it reads its twin, reports, gets a desired change made at
// the hub, and keeps reading and reporting with the hub stopped; its
// reports reach the hub once it is back. The SDK connects to port 8883 of
// GatewayHostName, so the broker listens on 127.0.0.1:8883, which it
// takes in turn with internal/daemon's TestNodeModuleSDK (sdktest.Listen).
// It needs node and compat/node/node_modules, which ./scripts/test
// installs. With CI set, node or the packages missing fails the test;
// otherwise it is skipped.
func TestNodeModuleSDK(t *testing.T) {
	node, dir := sdktest.NodeDir(t, "azure-iot-device", "azure-iot-device-mqtt")
	// Other tests run the SDK too (internal/daemon's): one at a time.
	ln := sdktest.Listen(t, sdktest.SDKBroker)

	f := setup(t, fixtureOptions{listener: ln})
	f.desiredAtDevice(t, "a", `{"interval":5}`)
	m := startNodeModule(t, f, node, dir, 90*time.Second, "OUTPOST_TOKEN_TTL=6") // renewed every 3 s, by connecting again
	send, expect := m.send, m.expect
	expect("open")

	send("get")
	tw := expect("twin")
	var desired map[string]any
	if err := json.Unmarshal(tw.Desired, &desired); err != nil || desired["interval"] != 5.0 || desired["$version"] != 2.0 {
		t.Fatalf("getTwin desired %s (%v)", tw.Desired, err)
	}

	send(`report {"from":"node","n":1}`)
	expect("reported")
	eventually(t, "node's report at the hub", func() bool {
		tw, err := f.owner.GetTwin(context.Background(), "d", "a")
		return err == nil && tw.Reported()["from"] == "node"
	})

	// waitInterval waits for a desired event with interval, and returns it.
	waitInterval := func(interval float64) map[string]any {
		t.Helper()
		for {
			var patch map[string]any
			e := expect("desired")
			if err := json.Unmarshal(e.Patch, &patch); err != nil {
				t.Fatalf("desired event %s: %v", e.Patch, err)
			}
			if patch["interval"] == interval {
				return patch
			}
		}
	}
	f.hubDesired(t, "a", `{"interval":7}`)
	if patch := waitInterval(7); patch["$version"] != 3.0 {
		t.Fatalf("desired event %v, want $version 3", patch)
	}

	// The daemon restarts: the SDK connects again by itself, subscribes
	// again, and follows the next change.
	f.restartBroker(t)
	f.waitLog(t, "module connected", "module=a")
	f.hubDesired(t, "a", `{"interval":9}`)
	waitInterval(9)

	// Offline: the module still reads its twin and reports.
	addr := f.hub.Addr().String()
	f.hub.Stop()
	send("get")
	tw = expect("twin")
	if !strings.Contains(string(tw.Reported), `"from":"node"`) {
		t.Fatalf("getTwin offline: reported %s", tw.Reported)
	}
	send(`report {"offline":true,"n":2}`)
	expect("reported")
	h2 := hubtest.Start(t, hubtest.Options{DataDir: f.hubData, Listen: addr})
	eventually(t, "the offline report at the hub", func() bool {
		tw, err := h2.Client(t).GetTwin(context.Background(), "d", "a")
		return err == nil && tw.Reported()["offline"] == true
	})

	// The SDK renews its token (every 3 s) by connecting again, and keeps
	// working: two renewals after the restart.
	eventually(t, "the SDK to renew its token twice", func() bool {
		return strings.Count(f.logs.String(), `msg="broker: module connected" module=a`) >= 4
	})
	send(`report {"renewed":true}`)
	expect("reported")
	eventually(t, "the report after the renewals at the hub", func() bool {
		tw, err := h2.Client(t).GetTwin(context.Background(), "d", "a")
		return err == nil && tw.Reported()["renewed"] == true
	})

	send("close")
	expect("closed")
	if err := m.cmd.Wait(); err != nil {
		t.Fatalf("node: %v", err)
	}
}

// nodeModule is compat/node/module.js running as module a of a fixture,
// driven line by line.
type nodeModule struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.Writer
	events chan nodeEvent
}

// startNodeModule runs compat/node/module.js as module a, with env added,
// until the test ends or timeout passes.
func startNodeModule(t testing.TB, f *fixture, node, dir string, timeout time.Duration, env ...string) *nodeModule {
	t.Helper()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, f.ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	cs := f.hub.DeviceConnectionString("d", "a", f.keys["a"]) + ";GatewayHostName=localhost"
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	cmd := exec.CommandContext(ctx, node, "module.js")
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(),
		"OUTPOST_MODULE_CS="+cs,
		"OUTPOST_CA="+caFile,
		"NODE_OPTIONS=--dns-result-order=ipv4first",
		"NO_COLOR=1",
	), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	m := &nodeModule{t: t, cmd: cmd, stdin: stdin, events: make(chan nodeEvent, 64)}
	go readNodeEvents(stdout, m.events)
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("node stderr:\n%s", stderr.String())
		}
	})
	return m
}

// send writes a command line to the module.
func (m *nodeModule) send(line string) {
	m.t.Helper()
	if _, err := io.WriteString(m.stdin, line+"\n"); err != nil {
		m.t.Fatalf("write to node: %v", err)
	}
}

// expect waits for the module's next event of step, logging the others.
func (m *nodeModule) expect(step string) nodeEvent {
	m.t.Helper()
	for {
		select {
		case e, ok := <-m.events:
			if !ok {
				m.t.Fatalf("node exited waiting for %q", step)
			}
			if e.Step == "error" {
				m.t.Fatalf("node failed during %s: %s", e.During, e.Error)
			}
			if e.Step == step {
				return e
			}
			m.t.Logf("node: %s %s %s", e.Step, e.Desired, e.Patch)
		case <-time.After(20 * time.Second):
			m.t.Fatalf("node: no %q within 20 s", step)
		}
	}
}

type nodeEvent struct {
	Step     string          `json:"step"`
	Desired  json.RawMessage `json:"desired"`
	Reported json.RawMessage `json:"reported"`
	Patch    json.RawMessage `json:"patch"`
	During   string          `json:"during"`
	Error    string          `json:"error"`
}

func readNodeEvents(r io.Reader, out chan<- nodeEvent) {
	defer close(out)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		var e nodeEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			e = nodeEvent{Step: "error", During: "output", Error: fmt.Sprintf("not JSON: %q", sc.Text())}
		}
		out <- e
	}
}

// BenchmarkNodeDesiredToModule: a desired patch at the hub → the
// properties.desired event of Microsoft's Node SDK (compat/node/module.js,
// printed on its stdout), through the syncer's long poll, the broker and
// the SDK. As TestNodeModuleSDK, it needs node, compat/node's packages and
// 127.0.0.1:8883.
func BenchmarkNodeDesiredToModule(b *testing.B) {
	node, dir := sdktest.NodeDir(b, "azure-iot-device", "azure-iot-device-mqtt")
	ln := sdktest.Listen(b, sdktest.SDKBroker)
	f := setup(b, fixtureOptions{listener: ln})
	m := startNodeModule(b, f, node, dir, 30*time.Minute)
	m.expect("open")
	m.send("get")
	m.expect("twin")
	benchDesired(b, f, func() map[string]any {
		var patch map[string]any
		if err := json.Unmarshal(m.expect("desired").Patch, &patch); err != nil {
			b.Fatal(err)
		}
		return patch
	})
}
