package daemon_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/internal/runtime"
	"github.com/outpost-edge/outpost/internal/sdktest"
)

// TestNodeModuleSDK runs a module written with Microsoft's Node.js module
// SDK (azure-iot-device + azure-iot-device-mqtt, unmodified;
// compat/node/edgemodule.js) as the daemon runs any module, on runc and the
// process runtime. Its image holds the script and its node_modules; the
// host's Node (Debian's /usr/bin/node, dynamically linked) runs it: under
// runc through createOptions.HostConfig.Binds ["/usr:/usr:ro"] (the image
// has /bin, /lib, /lib64 as links into /usr, as Debian), under process as
// a host process. ModuleClient.fromEnvironment(Mqtt) finds the workload
// socket, the trust bundle and the broker (GatewayHostName localhost, port
// 8883: the SDK takes no port) from the IOTEDGE_* variables the agent sets.
// The module reads its twin (the desired set at the hub before it started),
// reports every 300 ms, echoes desired changes, renews its 6 s tokens
// through the workload API (by connecting again, with the hub down too),
// and keeps reporting with the hub stopped: those reports reach the hub
// once it is back. Then the daemon restarts with the hub down: the module,
// started again, reads its twin as the device keeps it and reports, and
// that report reaches the hub when it returns.
//
// It needs node, compat/node/node_modules (./scripts/test installs both;
// with CI set their absence fails the test) and 127.0.0.1:8883, which it
// shares with internal/broker's TestNodeModuleSDK through sdktest.
func TestNodeModuleSDK(t *testing.T) {
	node, dir := sdktest.NodeDir(t, "azure-iot-device", "azure-iot-device-mqtt")
	if node != "/usr/bin/node" {
		// The module's script starts with #!/usr/bin/node.
		t.Skipf("SKIPPED, NOT TESTED: node is %s, not Debian's /usr/bin/node", node)
	}
	layer := nodeModuleLayer(t, dir)
	t.Logf("the Node module's image layer: %d KiB", len(layer)/1024)
	for _, kind := range agenttest.Kinds(t) {
		if kind == runtime.KindDocker {
			t.Log("docker runtime: not covered by this test (runc and process are)")
			continue
		}
		t.Run(kind, func(t *testing.T) { testNodeModule(t, kind, layer) })
	}
}

func testNodeModule(t *testing.T, kind string, layer []byte) {
	ln := sdktest.Listen(t, sdktest.SDKBroker)
	f := agenttest.New(t, kind)
	ctx := t.Context()
	ref := f.Registry + "/nodemod:1"
	agenttest.PushLayer(t, ref, layer, v1.Config{
		Entrypoint: []string{"/app/edgemodule.js"}, WorkingDir: "/app",
		Env: []string{"PATH=/usr/bin:/bin"},
	})
	if _, err := f.Owner.CreateModule(ctx, hubapi.Module{DeviceID: f.DeviceID, ModuleID: "nodemod"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Owner.PatchTwin(ctx, f.DeviceID, "nodemod", []byte(`{"properties":{"desired":{"greeting":"hello"}}}`), ""); err != nil {
		t.Fatal(err)
	}
	f.Deploy(t, map[string]any{"nodemod": map[string]any{
		"image": ref, "restartPolicy": "never",
		"env":           map[string]any{"NODEMOD_TOKEN_TTL": "6"},
		"createOptions": map[string]any{"HostConfig": map[string]any{"Binds": []string{"/usr:/usr:ro"}}},
	}})

	cfg := config(t, f)
	cfg.BrokerListener, cfg.GatewayHostName = ln, "localhost"
	logs := &logBuffer{t: t}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	_, stop := start(t, cfg)
	mc := mgmtclient.New(cfg.MgmtSocket)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if rc, err := mc.Logs(context.Background(), "nodemod", mgmtclient.LogOptions{}); err == nil {
			b, _ := io.ReadAll(rc)
			rc.Close()
			t.Logf("the module's log:\n%s", b)
		}
	})

	// events returns the module's log as JSON steps; a step "error" fails
	// the test.
	events := func() []nodeStep {
		t.Helper()
		rc, err := mc.Logs(ctx, "nodemod", mgmtclient.LogOptions{})
		if err != nil {
			return nil
		}
		defer rc.Close()
		var out []nodeStep
		sc := bufio.NewScanner(rc)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			var e nodeStep
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				continue // the runtime's own lines
			}
			if e.Step == "error" {
				t.Fatalf("the Node module failed during %s: %s", e.During, e.Error)
			}
			out = append(out, e)
		}
		return out
	}
	lastReported := func() int {
		n := 0
		for _, e := range events() {
			if e.Step == "reported" {
				n = max(n, e.N)
			}
		}
		return n
	}
	owner := f.Owner
	reported := func() map[string]any {
		tw, err := owner.GetTwin(ctx, f.DeviceID, "nodemod")
		if err != nil {
			return nil
		}
		return tw.Reported()
	}
	// echoed patches desired ping at the hub and waits for the module's
	// echo at the hub.
	echoed := func(ping string) {
		t.Helper()
		tw, err := owner.PatchTwin(ctx, f.DeviceID, "nodemod", []byte(`{"properties":{"desired":{"ping":"`+ping+`"}}}`), "")
		if err != nil {
			t.Fatal(err)
		}
		var echo map[string]any
		defer func() {
			if t.Failed() {
				t.Logf("the echo at the hub: %v, desired version %d", echo, tw.DesiredVersion())
			}
		}()
		agenttest.Eventually(t, 60*time.Second, "the module's echo of "+ping+" at the hub", func() bool {
			echo, _ = reported()["echo"].(map[string]any)
			return echo["ping"] == ping && fmt.Sprint(echo["version"]) == strconv.FormatInt(tw.DesiredVersion(), 10)
		})
	}

	// getTwin at start: the desired set at the hub before it ran.
	agenttest.Eventually(t, 60*time.Second, "the module's first report at the hub", func() bool {
		events()
		started, _ := reported()["started"].(map[string]any)
		desired, _ := started["desired"].(map[string]any)
		return desired["greeting"] == "hello"
	})
	echoed("one")

	// The hub stops while the module reports: reports go on (acknowledged
	// once durable on the device) and reach the hub when it is back.
	// Its token is renewed then too: signed by the workload API and checked
	// by the broker with the keys the device keeps.
	connected := func() int { return logs.count(`msg="broker: module connected"`, "module=nodemod") }
	addr := f.Hub.Addr().String()
	f.Hub.Stop()
	stoppedAt, connectedAt := lastReported(), connected()
	var offline int
	agenttest.Eventually(t, 60*time.Second, "reports acknowledged and a token renewed with the hub down", func() bool {
		offline = lastReported()
		return offline >= stoppedAt+5 && connected() > connectedAt
	})
	h2 := hubtest.Start(t, hubtest.Options{DataDir: f.Hub.DataDir, Listen: addr})
	owner = h2.Client(t)
	agenttest.Eventually(t, 60*time.Second, "the reports made offline at the hub", func() bool {
		n, _ := strconv.Atoi(fmt.Sprint(reported()["n"]))
		return n >= offline
	})
	echoed("two")

	// Token renewal: each new token (every 3 s) is signed through the
	// workload API, and the SDK connects again with it.
	agenttest.Eventually(t, 60*time.Second, "the SDK to renew its token three times", func() bool {
		return connected() >= 4
	})
	echoed("three")

	// outpost status: the module is connected to the broker (but for the
	// moments it reconnects with a new token), with the desired version it
	// was last sent.
	tw, err := owner.GetTwin(ctx, f.DeviceID, "nodemod")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st, err := mc.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var link mgmtclient.BrokerModule
		for _, m := range st.Broker.Modules {
			if m.ModuleID == "nodemod" {
				link = m
			}
		}
		if link.Connected && link.DesiredVersion == tw.DesiredVersion() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodemod in outpost status: %+v, want connected at desired version %d", link, tw.DesiredVersion())
		}
	}

	// The daemon restarts with the hub down: it boots offline and starts the
	// module again; the module reads its twin as the device keeps it (ping
	// three) and reports that, acknowledged once durable on the device; the
	// report reaches the hub once it is back.
	stop()
	h2.Stop()
	ln.Close()
	cfg.BrokerListener, err = net.Listen("tcp", sdktest.SDKBroker) // this test holds the port's lock
	if err != nil {
		t.Fatal(err)
	}
	d, _ := start(t, cfg)
	startedWith := func(r map[string]any) any {
		started, _ := r["started"].(map[string]any)
		desired, _ := started["desired"].(map[string]any)
		return desired["ping"]
	}
	agenttest.Eventually(t, 60*time.Second, "the module's report after an offline boot, on the device", func() bool {
		events()
		local, err := d.Syncer().Twin("nodemod")
		return err == nil && startedWith(local.Reported()) == "three"
	})
	h3 := hubtest.Start(t, hubtest.Options{DataDir: f.Hub.DataDir, Listen: addr})
	owner = h3.Client(t)
	agenttest.Eventually(t, 60*time.Second, "the report made after an offline boot at the hub", func() bool {
		return startedWith(reported()) == "three"
	})
}

// nodeStep is a line of compat/node/edgemodule.js's log.
type nodeStep struct {
	Step   string `json:"step"`
	N      int    `json:"n"`
	During string `json:"during"`
	Error  string `json:"error"`
}

// logBuffer keeps the daemon's log lines and sends them to t.Log.
type logBuffer struct {
	t     testing.TB
	mu    sync.Mutex
	lines []string
}

func (b *logBuffer) Write(p []byte) (int, error) {
	line := strings.TrimSuffix(string(p), "\n")
	b.mu.Lock()
	b.lines = append(b.lines, line)
	b.mu.Unlock()
	b.t.Log(line)
	return len(p), nil
}

// count is how many lines contain all of parts.
func (b *logBuffer) count(parts ...string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
next:
	for _, l := range b.lines {
		for _, p := range parts {
			if !strings.Contains(l, p) {
				continue next
			}
		}
		n++
	}
	return n
}

// nodeModuleLayer is the Node module's image layer: /app/edgemodule.js,
// /app/node_modules with the packages azure-iot-device and
// azure-iot-device-mqtt need (not the rest of compat/node's, nor what node
// does not load), /bin, /lib
// and /lib64 linking into /usr (as Debian's are; /usr is the host's, bound
// in), /etc/passwd and /tmp.
func nodeModuleLayer(t *testing.T, dir string) []byte {
	t.Helper()
	pkgs, err := nodeClosure(dir, "azure-iot-device", "azure-iot-device-mqtt")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	write := func(h *tar.Header, data []byte) {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	passwd := []byte("root:x:0:0:root:/root:/bin/sh\n")
	for _, h := range []*tar.Header{
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(passwd))},
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
		{Name: "usr/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "bin", Typeflag: tar.TypeSymlink, Linkname: "usr/bin"},
		{Name: "lib", Typeflag: tar.TypeSymlink, Linkname: "usr/lib"},
		{Name: "lib64", Typeflag: tar.TypeSymlink, Linkname: "usr/lib64"},
		{Name: "app/", Typeflag: tar.TypeDir, Mode: 0o755},
	} {
		if h.Name == "etc/passwd" {
			write(h, passwd)
		} else {
			write(h, nil)
		}
	}
	script, err := os.ReadFile(filepath.Join(dir, "edgemodule.js"))
	if err != nil {
		t.Fatal(err)
	}
	write(&tar.Header{Name: "app/edgemodule.js", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(script))}, script)
	dirs := map[string]bool{"app": true}
	var mkdirs func(string)
	mkdirs = func(d string) {
		if dirs[d] || d == "." {
			return
		}
		mkdirs(path.Dir(d))
		dirs[d] = true
		write(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	}
	for _, pkg := range pkgs {
		err := filepath.WalkDir(filepath.Join(dir, pkg), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			name := path.Join("app", filepath.ToSlash(rel))
			switch {
			case e.IsDir() && e.Name() == "node_modules":
				return fs.SkipDir // nested packages are in pkgs when needed
			case e.IsDir():
				mkdirs(name)
			case e.Type().IsRegular() && slices.ContainsFunc(unneeded, func(ext string) bool { return strings.HasSuffix(name, ext) }):
				// Never loaded by node: leaves the layer less than half the size.
			case e.Type().IsRegular():
				data, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				mkdirs(path.Dir(name))
				write(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))}, data)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// unneeded are the files of npm packages a module leaves out of its image:
// TypeScript sources and declarations, source maps, documentation.
var unneeded = []string{".ts", ".mts", ".cts", ".map", ".md"}

// nodeClosure returns the package directories (relative to dir, e.g.
// node_modules/mqtt) that roots need, as Node resolves them: a dependency
// in the nearest node_modules up from the package needing it.
func nodeClosure(dir string, roots ...string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	var visit func(from, name string) error
	visit = func(from, name string) error {
		// from is a package dir relative to dir ("" for dir itself).
		for at := from; ; {
			cand := path.Join(at, "node_modules", name)
			if fi, err := os.Stat(filepath.Join(dir, cand)); err == nil && fi.IsDir() {
				if seen[cand] {
					return nil
				}
				seen[cand] = true
				out = append(out, cand)
				b, err := os.ReadFile(filepath.Join(dir, cand, "package.json"))
				if err != nil {
					return err
				}
				var pj struct {
					Dependencies         map[string]string `json:"dependencies"`
					OptionalDependencies map[string]string `json:"optionalDependencies"`
				}
				if err := json.Unmarshal(b, &pj); err != nil {
					return err
				}
				for dep := range pj.Dependencies {
					if err := visit(cand, dep); err != nil {
						return err
					}
				}
				for dep := range pj.OptionalDependencies {
					_ = visit(cand, dep) // absent when not for this platform
				}
				return nil
			}
			if at == "" {
				return &fs.PathError{Op: "resolve", Path: path.Join(from, name), Err: fs.ErrNotExist}
			}
			// Up to the package dir holding this one's node_modules.
			i := strings.LastIndex(at, "/node_modules/")
			if i < 0 {
				at = ""
			} else {
				at = at[:i]
			}
		}
	}
	for _, r := range roots {
		if err := visit("", r); err != nil {
			return nil, err
		}
	}
	return out, nil
}
