package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
)

// slotBroker stands in the broker's slot to check what the daemon hands
// it and when it starts and stops it. It serves TLS handshakes on its
// listener.
type slotBroker struct {
	d       *Daemon
	deps    BrokerDeps
	started chan struct{}
	// at stop: the module's status (the agent must have stopped it)
	stoppedWith chan string
}

func (b *slotBroker) Run(ctx context.Context) error {
	close(b.started)
	go func() {
		for {
			c, err := b.deps.Listener.Accept()
			if err != nil {
				return
			}
			go func() { _ = tls.Server(c, b.deps.TLS).Handshake(); c.Close() }()
		}
	}()
	<-ctx.Done()
	status := "missing"
	for _, m := range b.d.Agent().Modules() {
		if m.Name == "m" {
			status = m.RuntimeStatus
		}
	}
	b.stoppedWith <- status
	return b.deps.Listener.Close()
}

// TestBrokerSlot: the daemon makes the broker with its device, hub host,
// syncer, the TLS configuration from the device CA and a listener on
// --broker-listen; starts it before the agent and stops it after the agent
// has stopped the modules.
func TestBrokerSlot(t *testing.T) {
	f := agenttest.New(t, "process")
	f.Deploy(t, map[string]any{"m": map[string]any{"image": f.Image, "restartPolicy": "always"}})
	sockDir, err := os.MkdirTemp("", "outpostd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)

	var b *slotBroker
	var d *Daemon
	saved := newBroker
	t.Cleanup(func() { newBroker = saved })
	newBroker = func(deps func() (BrokerDeps, error)) (Broker, error) {
		dp, err := deps()
		if err != nil {
			return nil, err
		}
		b = &slotBroker{deps: dp, started: make(chan struct{}), stoppedWith: make(chan string, 1)}
		return b, nil
	}
	d, err = New(Config{
		ConnectionString: f.DeviceCS, CAFile: f.Hub.CAFile, DataDir: f.DataDir, Runtime: "process",
		MgmtSocket: filepath.Join(sockDir, "mgmt.sock"), GatewayHostName: "gw.test", BrokerListen: "127.0.0.1:0",
		BackoffBase: 100 * time.Millisecond, StopGrace: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	b.d = d
	if b.deps.DeviceID != f.DeviceID || b.deps.HubHostName != f.Hub.HostName() || b.deps.Syncer != d.Syncer() || b.deps.Logger == nil {
		t.Errorf("broker deps %+v", b.deps)
	}
	addr := b.deps.Listener.Addr().(*net.TCPAddr)
	if !addr.IP.IsLoopback() || addr.Port == 0 {
		t.Errorf("broker listener on %v, want a port of 127.0.0.1 (--broker-listen)", addr)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case <-b.started:
	case <-time.After(20 * time.Second):
		t.Fatal("the broker was not started")
	}
	// Its TLS: the device CA's certificate for localhost.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(d.CA().TrustBundle())
	c, err := tls.Dial("tcp", addr.String(), &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("TLS to the broker's listener: %v", err)
	}
	c.Close()
	agenttest.Eventually(t, 60*time.Second, "m running", func() bool {
		for _, m := range d.Agent().Modules() {
			if m.Name == "m" && m.RuntimeStatus == "running" {
				return true
			}
		}
		return false
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
	if s := <-b.stoppedWith; s != "stopped" {
		t.Errorf("the broker was stopped while m was %q: it must stop after the agent", s)
	}
}
