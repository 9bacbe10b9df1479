package deviceclient_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/cli"
	"github.com/outpost-edge/outpost/internal/daemon"
	"github.com/outpost-edge/outpost/internal/daemon/daemontest"
	"github.com/outpost-edge/outpost/internal/deviceca"
	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/sdk/deviceclient"
)

// edge is a real hub with edge device "dev", a leaf device "leaf-1" whose
// parent it is, and dev's daemon, its broker on 127.0.0.1 with a
// certificate for edge.test.
type edge struct {
	f          *agenttest.Fixture
	brokerAddr string
	leafCS     string // with GatewayHostName=edge.test
	mgmtSocket string
	root       []byte // what `outpost daemon ca` prints
}

func newEdge(t *testing.T) *edge {
	t.Helper()
	f := agenttest.New(t, "process")
	ctx := t.Context()
	parent, err := f.Owner.GetDevice(ctx, f.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := f.Owner.CreateDevice(ctx, hubapi.Device{DeviceID: "leaf-1", Capabilities: &hubapi.Capabilities{}, DeviceScope: parent.DeviceScope})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &edge{f: f, brokerAddr: l.Addr().String(), mgmtSocket: f.DataDir + "/mgmt.sock",
		leafCS: f.Hub.DeviceConnectionString("leaf-1", "", leaf.Authentication.SymmetricKey.PrimaryKey) + ";GatewayHostName=edge.test"}
	dm, err := daemon.New(daemon.Config{
		ConnectionString: f.DeviceCS, CAFile: f.Hub.CAFile, DataDir: f.DataDir, Runtime: f.Kind,
		MgmtSocket: e.mgmtSocket, GatewayHostName: "edge.test", BrokerListener: l,
		Logger: daemontest.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	daemontest.Run(t, dm)
	root, err := deviceca.ReadRoot(deviceca.OwnCertFile(f.DataDir))
	if err != nil {
		t.Fatal(err)
	}
	e.root = root.PEM
	return e
}

// connect connects the leaf once the edge device has synced it (until
// then the broker refuses it).
func (e *edge) connect(t *testing.T, ttl time.Duration) *deviceclient.Client {
	t.Helper()
	var c *deviceclient.Client
	agenttest.Eventually(t, 30*time.Second, "the broker to accept leaf-1", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		var err error
		c, err = deviceclient.New(ctx, deviceclient.Config{ConnectionString: e.leafCS, CAPEM: e.root, BrokerAddress: e.brokerAddr, TokenTTL: ttl,
			Logger: daemontest.Logger(t)})
		if err != nil {
			t.Logf("connect: %v", err)
		}
		return err == nil
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// reported is leaf-1's reported properties at the hub.
func (e *edge) reported(t *testing.T) map[string]any {
	t.Helper()
	tw, err := e.f.Owner.GetTwin(t.Context(), "leaf-1", "")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(tw)
	var m struct {
		Properties struct {
			Reported map[string]any `json:"reported"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m.Properties.Reported
}

// child is leaf-1 in the daemon's status (outpost status -o json).
func (e *edge) child(t *testing.T) (mgmtclient.Child, bool) {
	t.Helper()
	st, err := mgmtclient.New(e.mgmtSocket).Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.Children {
		if c.DeviceID == "leaf-1" {
			return c, true
		}
	}
	return mgmtclient.Child{}, false
}

func (e *edge) patchDesired(t *testing.T, desired string) {
	t.Helper()
	if _, err := e.f.Owner.PatchTwin(t.Context(), "leaf-1", "", []byte(`{"properties":{"desired":`+desired+`}}`), ""); err != nil {
		t.Fatal(err)
	}
}

// TestLeafTwinOnlineAndOffline: a leaf device connects through the edge
// device's broker with its device connection string (GatewayHostName) and
// the root `outpost daemon ca` prints; it reads its twin, reports (the
// report reaches the hub), gets a desired change made at the hub; with the
// hub stopped it still reads its twin and reports, and those reports reach
// the hub once it is back, as does a desired change made then.
func TestLeafTwinOnlineAndOffline(t *testing.T) {
	e := newEdge(t)
	// The leaves' telemetry goes upstream (held while the hub is away).
	e.f.DeployManifest(t, map[string]any{"schemaVersion": "1.0", "modules": map[string]any{},
		"routes": map[string]any{"leaves": `FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO $upstream`}})
	agenttest.Eventually(t, 30*time.Second, "the leaves' route in force", func() bool {
		tw, err := e.f.Owner.GetTwin(t.Context(), e.f.DeviceID, "$edgeHub")
		if err != nil {
			return false
		}
		st, _ := tw.Reported()["lastDesiredStatus"].(map[string]any)
		return fmt.Sprint(st["code"]) == "200" && fmt.Sprint(tw.Reported()["lastDesiredVersion"]) == fmt.Sprint(tw.DesiredVersion())
	})
	e.patchDesired(t, `{"rate":1}`)
	c := e.connect(t, 0)
	var mu sync.Mutex
	var patches []map[string]any
	c.OnDesired(func(p map[string]any, _ int64) {
		mu.Lock()
		defer mu.Unlock()
		patches = append(patches, p)
	})
	lastDesired := func() map[string]any {
		mu.Lock()
		defer mu.Unlock()
		if len(patches) == 0 {
			return nil
		}
		return patches[len(patches)-1]
	}
	ctx := t.Context()
	agenttest.Eventually(t, 20*time.Second, "the desired rate in the leaf's twin", func() bool {
		tw, err := c.Twin(ctx)
		return err == nil && tw.Desired.Values["rate"] == 1.0
	})
	if _, err := c.UpdateReported(ctx, map[string]any{"online": true}); err != nil {
		t.Fatal(err)
	}
	agenttest.Eventually(t, 20*time.Second, "the report at the hub", func() bool { return e.reported(t)["online"] == true })
	e.patchDesired(t, `{"rate":2}`)
	agenttest.Eventually(t, 20*time.Second, "the desired change at the leaf", func() bool { return lastDesired()["rate"] == 2.0 })
	connectedAt := time.Now()
	if kid, ok := e.child(t); !ok || !kid.Connected || kid.Since.After(connectedAt) || kid.LastActivity.Before(kid.Since) || kid.QueuedReports != 0 {
		t.Errorf("status: leaf-1 %+v (listed %v), want connected, heard from since, nothing queued", kid, ok)
	}

	hubData, hubAddr := e.f.Hub.DataDir, e.f.Hub.Addr().String()
	e.f.Hub.Stop()
	for _, k := range []string{"offline1", "offline2"} {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if _, err := c.UpdateReported(rctx, map[string]any{k: true}); err != nil {
			t.Fatalf("report %s with the hub down: %v", k, err)
		}
		cancel()
	}
	for i := range 3 {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := c.SendEvent(rctx, deviceclient.Message{Body: fmt.Appendf(nil, `{"t":%d}`, i)}); err != nil {
			t.Fatalf("telemetry %d with the hub down: %v", i, err)
		}
		cancel()
	}
	tw, err := c.Twin(ctx)
	if err != nil || tw.Desired.Values["rate"] != 2.0 || tw.Reported.Values["offline2"] != true {
		t.Fatalf("twin with the hub down: %+v, %v", tw, err)
	}
	// outpost status lists the leaf with its two reports and three
	// messages queued.
	if kid, _ := e.child(t); kid.QueuedReports != 2 || kid.QueuedMessages != 3 || !kid.Connected {
		t.Errorf("status with the hub down: leaf-1 %+v, want connected with 2 queued reports and 3 messages", kid)
	}
	ios, _, out, _ := cli.TestIO()
	if code := cli.Run(ctx, ios, []string{"status", "--mgmt-socket", e.mgmtSocket}); code != 0 {
		t.Fatalf("outpost status: exit %d", code)
	}
	if f := rowOf(out.String(), "leaf-1"); len(f) != 7 || f[1] != "connected" || f[4] != "ago" || f[5] != "2" || f[6] != "3" {
		t.Errorf("outpost status: leaf-1's row %q, want connected, last activity, 2 reports and 3 messages queued\n%s", f, out)
	}

	e.f.Hub = hubtest.Start(t, hubtest.Options{DataDir: hubData, Listen: hubAddr})
	e.f.Owner = e.f.Hub.Client(t)
	agenttest.Eventually(t, 60*time.Second, "the offline reports at the hub", func() bool {
		r := e.reported(t)
		return r["online"] == true && r["offline1"] == true && r["offline2"] == true
	})
	agenttest.Eventually(t, 30*time.Second, "leaf-1's queues empty in outpost status", func() bool {
		kid, _ := e.child(t)
		return kid.QueuedReports == 0 && kid.QueuedMessages == 0
	})
	e.patchDesired(t, `{"rate":3}`)
	agenttest.Eventually(t, 60*time.Second, "the desired change made after the outage at the leaf", func() bool { return lastDesired()["rate"] == 3.0 })
}

// TestLeafTokenRenewal: with 3 s tokens the leaf reconnects with a new one
// before each expires, twice at least, and goes on reading and reporting.
func TestLeafTokenRenewal(t *testing.T) {
	e := newEdge(t)
	c := e.connect(t, 3*time.Second)
	var mu sync.Mutex
	var ups, downs int
	c.OnConnectionChange(func(up bool, why error) {
		mu.Lock()
		defer mu.Unlock()
		if up {
			ups++
		} else if why != nil && strings.Contains(why.Error(), "renewing") {
			downs++
		}
	})
	agenttest.Eventually(t, 30*time.Second, "two token renewals", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return downs >= 2 && ups >= 2
	})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, err := c.UpdateReported(ctx, map[string]any{"renewed": true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Twin(ctx); err != nil {
		t.Fatal(err)
	}
	agenttest.Eventually(t, 20*time.Second, "the report at the hub", func() bool { return e.reported(t)["renewed"] == true })
}

// rowOf is the fields of the line of out starting with first.
func rowOf(out, first string) []string {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == first {
			return f
		}
	}
	return nil
}
