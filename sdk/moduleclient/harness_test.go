package moduleclient_test

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/daemon"
	"github.com/outpost-edge/outpost/internal/daemon/daemontest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/sdk/moduleclient"
)

// device is a real hub with device "dev" and its module "m" (deployed
// with the test image under the process runtime, so that the daemon
// serves its workload socket), and a daemon for it whose broker listens on
// 127.0.0.1.
type device struct {
	f          *agenttest.Fixture
	module     string
	genID      string
	brokerAddr string
	mgmtSocket string
	daemon     *daemon.Daemon
	stop       func()
}

func newDevice(t testing.TB) *device {
	t.Helper()
	d, l := newFixture(t)
	d.start(t, l)
	return d
}

// newFixture is newDevice without a daemon, and the broker's listener.
func newFixture(t testing.TB) (*device, net.Listener) {
	t.Helper()
	return newFixtureWith(t, "m", func(f *agenttest.Fixture, _ string) map[string]any {
		return map[string]any{"image": f.Image, "restartPolicy": "always"}
	})
}

// newFixtureWith deploys module (as spec makes it, given the broker's
// address) rather than m.
func newFixtureWith(t testing.TB, module string, spec func(f *agenttest.Fixture, brokerAddr string) map[string]any) (*device, net.Listener) {
	t.Helper()
	f := agenttest.New(t, "process")
	m, err := f.Owner.CreateModule(t.Context(), hubapi.Module{DeviceID: f.DeviceID, ModuleID: module})
	if err != nil {
		t.Fatal(err)
	}
	sockDir, err := os.MkdirTemp("", "sdk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.Deploy(t, map[string]any{module: spec(f, l.Addr().String())})
	d := &device{f: f, module: module, genID: m.GenerationID, brokerAddr: l.Addr().String(), mgmtSocket: filepath.Join(sockDir, "mgmt.sock")}
	return d, l
}

// start runs the daemon with its broker on l (a new listener on the same
// address when nil).
func (d *device) start(t testing.TB, l net.Listener) {
	t.Helper()
	if l == nil {
		var err error
		deadline := time.Now().Add(20 * time.Second)
		for {
			l, err = net.Listen("tcp", d.brokerAddr)
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	dm, err := daemon.New(daemon.Config{
		ConnectionString: d.f.DeviceCS, CAFile: d.f.Hub.CAFile, DataDir: d.f.DataDir, Runtime: d.f.Kind,
		MgmtSocket: d.mgmtSocket, GatewayHostName: "localhost", BrokerListener: l,
		BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second, StopGrace: 5 * time.Second,
		Logger: daemontest.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	d.daemon = dm
	d.stop = daemontest.Run(t, dm)
}

// setEnv sets the IOTEDGE_* variables the daemon gives module m, as this
// test process acts as the module.
func (d *device) setEnv(t testing.TB) {
	t.Helper()
	sock := filepath.Join(d.f.DataDir, "workload", d.module, "workload.sock")
	agenttest.Eventually(t, 30*time.Second, "the module's workload socket", func() bool {
		_, err := os.Stat(sock)
		return err == nil
	})
	for k, v := range map[string]string{
		moduleclient.EnvDeviceID: d.f.DeviceID, moduleclient.EnvModuleID: d.module,
		moduleclient.EnvHubHostName: d.f.Hub.HostName(), moduleclient.EnvGatewayHost: "localhost",
		moduleclient.EnvWorkloadURI: "unix://" + sock, moduleclient.EnvGenerationID: d.genID,
		moduleclient.EnvAPIVersion: "2019-01-30", moduleclient.EnvAuthScheme: "sasToken",
		moduleclient.EnvBrokerAddress: d.brokerAddr,
	} {
		t.Setenv(k, v)
	}
}

// connect connects as module m through the daemon's workload API.
func (d *device) connect(t testing.TB, opts ...moduleclient.Option) *moduleclient.Client {
	t.Helper()
	d.setEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	c, err := moduleclient.NewFromEnvironment(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// hubTwin returns module m's twin at the hub, as JSON.
func (d *device) hubTwin(t testing.TB) map[string]any {
	t.Helper()
	tw, err := d.f.Owner.GetTwin(t.Context(), d.f.DeviceID, d.module)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(tw)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// hubReported returns module m's reported properties at the hub.
func (d *device) hubReported(t testing.TB) map[string]any {
	props, _ := d.hubTwin(t)["properties"].(map[string]any)
	r, _ := props["reported"].(map[string]any)
	return r
}

// patchDesired patches module m's desired properties at the hub.
func (d *device) patchDesired(t testing.TB, desired map[string]any) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"properties": map[string]any{"desired": desired}})
	if _, err := d.f.Owner.PatchTwin(t.Context(), d.f.DeviceID, d.module, b, ""); err != nil {
		t.Fatal(err)
	}
}

// desiredLog collects what OnDesired delivers.
type desiredLog struct {
	mu      sync.Mutex
	patches []map[string]any
	vers    []int64
}

func (l *desiredLog) add(p map[string]any, v int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.patches = append(l.patches, p)
	l.vers = append(l.vers, v)
}

func (l *desiredLog) snapshot() ([]map[string]any, []int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]map[string]any(nil), l.patches...), append([]int64(nil), l.vers...)
}
