// Package agenttest runs the device agent for tests, over real parts: a hub
// (hubtest), an in-process OCI registry holding a test module image, the
// device's store, image store and a real runtime.
package agenttest

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/outpost-edge/outpost/internal/agent"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/imagestore"
	"github.com/outpost-edge/outpost/internal/runtime"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/syncer"
)

// Fixture is a hub with one device, a registry with the test image, and the
// device's data dir.
type Fixture struct {
	Hub      *hubtest.Hub
	Owner    *hubclient.Client
	Registry string // host:port
	Image    string // the test module image: entrypoint /mod, cmd run
	DeviceID string
	DeviceCS string // the device's connection string
	DataDir  string
	Kind     string // runtime kind

	registry *httptest.Server
}

// Kinds returns the runtimes to test with: process always, runc when root
// and runc is installed, docker when a Docker engine answers (DOCKER_HOST or
// /var/run/docker.sock).
func Kinds(t testing.TB) []string {
	kinds := []string{runtime.KindProcess}
	if _, err := exec.LookPath("runc"); err == nil && os.Geteuid() == 0 {
		kinds = append(kinds, runtime.KindRunc)
	} else {
		t.Log("runc runtime not tested: needs root and runc on PATH")
	}
	if _, err := runtime.New(runtime.KindDocker, t.TempDir()); err == nil {
		kinds = append(kinds, runtime.KindDocker)
	} else {
		t.Logf("docker runtime not tested: %v", err)
	}
	return kinds
}

// New starts a hub with device "dev" and a registry with the test image.
func New(t testing.TB, kind string) *Fixture {
	t.Helper()
	return NewWithHub(t, kind, hubtest.Options{})
}

// NewWithHub is New with a hub started with opts.
func NewWithHub(t testing.TB, kind string, opts hubtest.Options) *Fixture {
	t.Helper()
	f := &Fixture{Kind: kind, DeviceID: "dev", DataDir: t.TempDir()}
	t.Cleanup(func() { f.removeInstances(t) })
	f.Hub = hubtest.Start(t, opts)
	f.Owner = f.Hub.Client(t)
	d, err := f.Owner.CreateDevice(context.Background(), hubapi.Device{DeviceID: f.DeviceID})
	if err != nil {
		t.Fatal(err)
	}
	f.DeviceCS = f.Hub.DeviceConnectionString(f.DeviceID, "", d.Authentication.SymmetricKey.PrimaryKey)
	srv := httptest.NewServer(registry.New(registry.Logger(nopLogger())))
	t.Cleanup(srv.Close)
	f.registry = srv
	f.Registry = strings.TrimPrefix(srv.URL, "http://")
	f.Image = f.Registry + "/mod:1"
	f.PushImage(t, f.Image, "")
	return f
}

// StopRegistry stops the registry: pulls from it find nothing listening.
func (f *Fixture) StopRegistry() { f.registry.Close() }

// removeInstances removes what the agents left in the runtime (stopped
// instances keep their mounts until removed).
func (f *Fixture) removeInstances(t testing.TB) {
	rt, err := runtime.New(f.Kind, filepath.Join(f.DataDir, "runtime"))
	if err != nil {
		return
	}
	list, _ := rt.List(context.Background())
	for _, st := range list {
		if err := rt.Remove(context.Background(), st.Name); err != nil {
			t.Errorf("remove instance %s: %v", st.Name, err)
		}
	}
	// The shims of runc instances delete their runc state after the instance is gone:
	// wait for them (and the runc they run: processes with the data dir in their
	// command line), before the data dir goes (runc would make its root again).
	busy := func() bool {
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(f.DataDir+"/")) {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(20 * time.Second); busy() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
}

// Deploy applies a native manifest with these modules (JSON objects as in
// DESIGN's manifest) to the device.
func (f *Fixture) Deploy(t testing.TB, modules map[string]any) {
	t.Helper()
	f.DeployManifest(t, map[string]any{"schemaVersion": "1.0", "modules": modules})
}

// RoutesInForce reports whether the device's $edgeHub has taken its desired
// properties (the routes): lastDesiredStatus 200 for the desired version.
func (f *Fixture) RoutesInForce(t testing.TB) bool {
	t.Helper()
	tw, err := f.Owner.GetTwin(context.Background(), f.DeviceID, "$edgeHub")
	if err != nil {
		return false
	}
	st, _ := tw.Reported()["lastDesiredStatus"].(map[string]any)
	return fmt.Sprint(st["code"]) == "200" && fmt.Sprint(tw.Reported()["lastDesiredVersion"]) == fmt.Sprint(tw.DesiredVersion())
}

// IoTEdgeManifest is an IoT Edge deployment manifest (modulesContent) with
// IoT Edge 1.5's system modules, the given modules (each an $edgeAgent
// module entry; see IoTEdgeModule) and $edgeHub's routes.
func IoTEdgeManifest(modules, routes map[string]any) map[string]any {
	return map[string]any{"modulesContent": map[string]any{
		"$edgeAgent": map[string]any{"properties.desired": map[string]any{
			"schemaVersion": "1.1",
			"runtime":       map[string]any{"type": "docker", "settings": map[string]any{"minDockerVersion": "v1.25"}},
			"systemModules": map[string]any{
				"edgeAgent": map[string]any{"type": "docker", "settings": map[string]any{"image": "mcr.microsoft.com/azureiotedge-agent:1.5", "createOptions": "{}"}},
				"edgeHub": map[string]any{"type": "docker", "status": "running", "restartPolicy": "always",
					"settings": map[string]any{"image": "mcr.microsoft.com/azureiotedge-hub:1.5", "createOptions": "{}"}},
			},
			"modules": modules,
		}},
		"$edgeHub": map[string]any{"properties.desired": map[string]any{
			"schemaVersion":                "1.2",
			"routes":                       routes,
			"storeAndForwardConfiguration": map[string]any{"timeToLiveSecs": 7200},
		}},
	}}
}

// IoTEdgeModule is an $edgeAgent module entry running image.
func IoTEdgeModule(image string) map[string]any {
	return map[string]any{"version": "1.0", "type": "docker", "status": "running", "restartPolicy": "always",
		"settings": map[string]any{"image": image, "createOptions": "{}"}}
}

// DeployManifest applies a native manifest to the device.
func (f *Fixture) DeployManifest(t testing.TB, manifest map[string]any) {
	t.Helper()
	b, err := json.Marshal(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Owner.ApplyConfiguration(context.Background(), f.DeviceID, b); err != nil {
		t.Fatalf("deploy: %v", err)
	}
}

// Reported returns the $edgeAgent twin's reported properties at the hub.
func (f *Fixture) Reported(t testing.TB) map[string]any {
	t.Helper()
	tw, err := f.Owner.GetTwin(context.Background(), f.DeviceID, agent.AgentModule)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(tw.ReportedJSON(), &m)
	return m
}

// ModuleReported returns modules.<id> of the reported properties at the hub
// (nil when absent).
func (f *Fixture) ModuleReported(t testing.TB, id string) map[string]any {
	mods, _ := f.Reported(t)["modules"].(map[string]any)
	m, _ := mods[id].(map[string]any)
	return m
}

// Running is an agent running over the fixture's data dir.
type Running struct {
	Agent   *agent.Agent
	Syncer  *syncer.Syncer
	Runtime runtime.Runtime
	Images  *imagestore.Store
	Config  agent.Config

	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	close  func()
}

// Start runs an agent (with its syncer) over the fixture's data dir, with
// short back-offs; edit changes its config. It is stopped when the test ends.
func (f *Fixture) Start(t testing.TB, edit func(*agent.Config)) *Running {
	t.Helper()
	st, err := store.Open(filepath.Join(f.DataDir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := imagestore.Open(filepath.Join(f.DataDir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := runtime.New(f.Kind, filepath.Join(f.DataDir, "runtime"))
	if err != nil {
		t.Fatal(err)
	}
	hc, err := hubclient.New(f.DeviceCS, f.Hub.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	cs, _ := identity.ParseConnectionString(f.DeviceCS)
	sy, err := syncer.New(hc, st, f.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	cfg := agent.Config{
		DeviceID:        f.DeviceID,
		HubHostName:     cs.HostName,
		GatewayHostName: "gw.test",
		Syncer:          sy,
		Images:          imgs,
		Runtime:         rt,
		WorkloadDir:     filepath.Join(f.DataDir, "workload"),
		LogDir:          filepath.Join(f.DataDir, "logs"),
		BackoffBase:     100 * time.Millisecond,
		BackoffMax:      time.Second,
		StopGrace:       5 * time.Second,
		ReportInterval:  100 * time.Millisecond,
		Logger:          slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if edit != nil {
		edit(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	sdone := make(chan struct{})
	go func() { _ = sy.Run(sctx); close(sdone) }()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{Agent: a, Syncer: sy, Runtime: rt, Images: imgs, Config: cfg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	r.close = func() {
		// Send the agent's last reported patch, as the daemon does.
		fctx, fcancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := sy.Flush(fctx); err != nil {
			t.Logf("flush at stop: %v", err)
		}
		fcancel()
		scancel()
		<-sdone
		imgs.Close()
		st.Close()
	}
	t.Cleanup(func() { r.Stop(t) })
	return r
}

// Stop stops the agent (which stops its modules unless KeepInstances) and
// closes its stores.
func (r *Running) Stop(t testing.TB) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("agent run: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("the agent did not stop within 60 s")
		}
		r.close()
	})
}

// Module returns the agent's status of a module.
func (r *Running) Module(id string) (agent.ModuleStatus, bool) {
	for _, m := range r.Agent.Modules() {
		if m.Name == id {
			return m, true
		}
	}
	return agent.ModuleStatus{}, false
}

// Logs returns a module's logs so far.
func (r *Running) Logs(t testing.TB, id string) string {
	t.Helper()
	rc, err := r.Runtime.Logs(context.Background(), id, runtime.LogOptions{})
	if err != nil {
		return ""
	}
	defer rc.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(rc)
	return b.String()
}

// Eventually polls cond every 20 ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

var (
	buildOnce sync.Once
	binary    []byte
	buildErr  error
)

// modBinary builds testdata/mod, static.
func modBinary(t testing.TB) []byte {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := goruntime.Caller(0)
		src := filepath.Join(filepath.Dir(file), "testdata", "mod")
		dir, err := os.MkdirTemp("", "outpost-agenttest")
		if err != nil {
			buildErr = err
			return
		}
		defer os.RemoveAll(dir)
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = "/usr/local/go/bin/go"
		}
		out := filepath.Join(dir, "mod")
		cmd := exec.Command(goBin, "build", "-trimpath", "-o", out, ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build test module: %v: %s", err, b)
			return
		}
		binary, buildErr = os.ReadFile(out)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// PrivateRegistry starts a registry that wants user and password (HTTP basic
// auth), holding the test image, and returns the image's reference.
func (f *Fixture) PrivateRegistry(t testing.TB, user, password string) string {
	t.Helper()
	reg := registry.New(registry.Logger(nopLogger()))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/private:1"
	f.PushImage(t, ref, "", remote.WithAuth(&authn.Basic{Username: user, Password: password}))
	return ref
}

// PushImage pushes the test module image to ref; a variant other than ""
// gives an image of another digest (TEST_VARIANT in its env).
func (f *Fixture) PushImage(t testing.TB, ref, variant string, opts ...remote.Option) {
	t.Helper()
	bin := modBinary(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
		{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len("root:x:0:0:root:/root:/bin/sh\n"))},
		{Name: "mod", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		switch h.Name {
		case "etc/passwd":
			_, _ = tw.Write([]byte("root:x:0:0:root:/root:/bin/sh\n"))
		case "mod":
			_, _ = tw.Write(bin)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/", "TEST_FROM_IMAGE=yes"}
	if variant != "" {
		env = append(env, "TEST_VARIANT="+variant)
	}
	PushLayer(t, ref, buf.Bytes(), v1.Config{Entrypoint: []string{"/mod"}, Cmd: []string{"run"}, Env: env}, opts...)
}

// PushLayer pushes an image of one layer (a tar) and this config, for this
// machine's OS and architecture, to ref.
func PushLayer(t testing.TB, ref string, layerTar []byte, config v1.Config, opts ...remote.Option) {
	t.Helper()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = goruntime.GOOS, goruntime.GOARCH
	cf.Config = config
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, opts...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

func nopLogger() *log.Logger { return log.New(io.Discard, "", 0) }

// testWriter sends log lines to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
