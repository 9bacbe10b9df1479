package hub_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/store/etcdstore/etcdtest"
)

// replicaHost is the host name every replica of a test serves, as replicas
// behind one load balancer do; clients dial a chosen replica's address instead.
const replicaHost = "localhost:4443"

// startReplicas starts n hub replicas on one prefix of cluster c.
func startReplicas(t *testing.T, c *etcdtest.Cluster, n int) []*hubtest.Hub {
	t.Helper()
	var hs []*hubtest.Hub
	for range n {
		hs = append(hs, hubtest.Start(t, hubtest.Options{HostName: replicaHost, Store: c.OpenPrefix(t, "/hub")}))
	}
	return hs
}

// via returns a client for connectionString that reaches replica h whatever the
// connection string's host.
func via(t *testing.T, h *hubtest.Hub, connectionString string) *hubclient.Client {
	t.Helper()
	pem, err := os.ReadFile(h.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	addr := h.Addr().String()
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := hubclient.New(connectionString, "", hubclient.WithHTTPClient(&http.Client{Transport: tr}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestReplicas has a device sync through one replica while its twin is patched
// through another, on one etcd member.
func TestReplicas(t *testing.T) {
	c := etcdtest.Start(t, 1)
	hs := startReplicas(t, c, 2)
	a, b := hs[0], hs[1]
	if a.ConnectionString != b.ConnectionString {
		t.Fatalf("replicas have different owner credentials:\n%s\n%s", a.ConnectionString, b.ConnectionString)
	}
	ca, _ := os.ReadFile(a.CAFile)
	cb, _ := os.ReadFile(b.CAFile)
	if string(ca) != string(cb) {
		t.Fatal("replicas serve from different CAs")
	}
	ownerA := via(t, a, a.ConnectionString)
	d, err := ownerA.CreateDevice(ctx, hubapi.Device{DeviceID: "d"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ownerA.CreateModule(ctx, hubapi.Module{DeviceID: "d", ModuleID: "m"}); err != nil {
		t.Fatal(err)
	}
	devB := via(t, b, b.DeviceConnectionString("d", "", d.Authentication.SymmetricKey.PrimaryKey))
	full, err := devB.Sync(ctx, "d", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if twinOf(t, full, "m") == nil {
		t.Fatalf("full sync through B lacks module m's twin, made through A: %+v", full.Modules)
	}

	// A long poll held by B wakes for a patch made through A.
	type result struct {
		s   *hubapi.Sync
		err error
	}
	res := make(chan result, 1)
	go func() {
		s, err := devB.Sync(ctx, "d", full.Cursor, 50*time.Second)
		res <- result{s, err}
	}()
	if _, err := ownerA.PatchTwin(ctx, "d", "m", []byte(`{"properties":{"desired":{"x":1}}}`), ""); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	tw := twinOf(t, r.s, "m")
	if tw == nil || !strings.Contains(string(tw.DesiredJSON()), `"x":1`) {
		t.Fatalf("long poll through B returned %+v, want m's twin with desired x=1", r.s.Twins)
	}

	// Reported properties through B are read through A.
	ack, err := devB.UploadReported(ctx, "d", hubapi.ReportedBatch{Patches: []hubapi.ReportedPatch{{Seq: 1, ModuleID: "m", Patch: []byte(`{"y":2}`)}}})
	if err != nil || ack.Acked != 1 {
		t.Fatalf("report through B: %+v %v", ack, err)
	}
	got, err := ownerA.GetTwin(ctx, "d", "m")
	if err != nil || !strings.Contains(string(got.ReportedJSON()), `"y":2`) {
		t.Fatalf("twin through A after a report through B: %+v %v", got, err)
	}

	// An identity change through B (disabling the device) is seen by A at once.
	dev, err := via(t, b, b.ConnectionString).GetDevice(ctx, "d")
	if err != nil {
		t.Fatal(err)
	}
	dev.Status = "disabled"
	if _, err := via(t, b, b.ConnectionString).UpdateDevice(ctx, dev, ""); err != nil {
		t.Fatal(err)
	}
	var he *hubclient.Error
	if _, err := via(t, a, a.DeviceConnectionString("d", "", d.Authentication.SymmetricKey.PrimaryKey)).Sync(ctx, "d", "", 0); !errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized && he.StatusCode != http.StatusForbidden {
		t.Fatalf("sync through A of a device disabled through B: %v, want 401 or 403", err)
	}
}
