package daemon_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/daemon"
	"github.com/outpost-edge/outpost/internal/deviceca"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
)

// config is a daemon's configuration over the fixture's device, with short
// back-offs and its management socket in a temp dir.
func config(t *testing.T, f *agenttest.Fixture) daemon.Config {
	sockDir, err := os.MkdirTemp("", "outpostd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	return daemon.Config{
		ConnectionString: f.DeviceCS, CAFile: f.Hub.CAFile, DataDir: f.DataDir, Runtime: f.Kind,
		MgmtSocket: filepath.Join(sockDir, "mgmt.sock"), GatewayHostName: "gw.test", BrokerListen: "127.0.0.1:0",
		BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second, StopGrace: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
}

// start runs a daemon until the test ends (or the returned stop), which
// must return nil.
func start(t *testing.T, cfg daemon.Config) (*daemon.Daemon, func()) {
	t.Helper()
	d, err := daemon.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("daemon run: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("the daemon did not stop within 60 s")
		}
	}
	t.Cleanup(stop)
	return d, stop
}

// TestDaemonWorkloadAPI runs a daemon on each runtime with a module that
// signs through its workload socket (mounted into the container on runc
// and docker, a host path under process): the hub accepts the SAS token
// made from that digest as the module's. The daemon's CA is made once and
// kept across restarts, and the broker's certificate chains to it.
func TestDaemonWorkloadAPI(t *testing.T) {
	for _, kind := range agenttest.Kinds(t) {
		t.Run(kind, func(t *testing.T) {
			f := agenttest.New(t, kind)
			ctx := t.Context()
			if _, err := f.Owner.CreateModule(ctx, hubapi.Module{DeviceID: f.DeviceID, ModuleID: "signer"}); err != nil {
				t.Fatal(err)
			}
			host := f.Hub.HostName()
			sr := url.QueryEscape(host + "/devices/" + f.DeviceID + "/modules/signer")
			se := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
			f.Deploy(t, map[string]any{"signer": map[string]any{"image": f.Image, "restartPolicy": "never",
				"createOptions": map[string]any{"Cmd": []string{"sign", sr + "\n" + se}}}})

			cfg := config(t, f)
			d, stop := start(t, cfg)
			mc := mgmtclient.New(cfg.MgmtSocket)
			var logs string
			agenttest.Eventually(t, 60*time.Second, "the module's digest", func() bool {
				rc, err := mc.Logs(ctx, "signer", mgmtclient.LogOptions{})
				if err != nil {
					return false
				}
				defer rc.Close()
				b, _ := io.ReadAll(rc)
				logs = string(b)
				return strings.Contains(logs, "ready") || strings.Contains(logs, "sign:")
			})
			var digest string
			for _, line := range strings.Split(logs, "\n") {
				if d, ok := strings.CutPrefix(line, "digest "); ok {
					digest = d
				}
			}
			if digest == "" {
				t.Fatalf("the module did not sign:\n%s", logs)
			}
			token := "SharedAccessSignature sr=" + sr + "&sig=" + url.QueryEscape(digest) + "&se=" + se
			if code := f.Hub.GetStatus(t, "/twins/"+f.DeviceID+"/modules/signer?api-version="+hubclient.APIVersion, token); code != 200 {
				t.Fatalf("the hub answers the token the module signed through the workload API with %d", code)
			}
			if kind == "process" && !strings.Contains(logs, "IOTEDGE_WORKLOADURI=unix://"+filepath.Join(f.DataDir, "workload", "signer", "workload.sock")) {
				t.Errorf("process module's workload URI:\n%s", logs)
			}
			// The broker listens on 127.0.0.1 at a port of its own: modules are told.
			if !regexp.MustCompile(`(?m)^OUTPOST_BROKER_ADDRESS=127\.0\.0\.1:\d+$`).MatchString(logs) {
				t.Errorf("module's environment lacks OUTPOST_BROKER_ADDRESS=127.0.0.1:PORT:\n%s", logs)
			}

			// The CA: in the data dir, key 0600; the broker's certificate
			// is valid for the gateway, localhost and loopback.
			caFile := filepath.Join(f.DataDir, "ca", deviceca.CertFile)
			if d.CA().CertFile() != caFile {
				t.Errorf("CA file %s", d.CA().CertFile())
			}
			if fi, err := os.Stat(filepath.Join(f.DataDir, "ca", deviceca.KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("CA key: %v %v", fi, err)
			}
			verifyServes(t, d.BrokerTLS(), d.CA(), "gw.test", "localhost", "127.0.0.1", "::1")
			first := d.CA().Cert
			stop()

			// Restarted over the same data dir: the same CA.
			d2, _ := start(t, config(t, f))
			if !d2.CA().Cert.Equal(first) {
				t.Error("a restarted daemon made a new CA")
			}
		})
	}
}

// verifyServes checks that the certificate cfg serves chains to the CA's
// trust bundle for each host (deviceca's tests do the TLS handshakes).
func verifyServes(t *testing.T, cfg *tls.Config, ca *deviceca.CA, hosts ...string) {
	t.Helper()
	cert, err := cfg.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.TrustBundle())
	for _, h := range hosts {
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: h, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("the broker's certificate for %s: %v", h, err)
		}
	}
}

func TestDaemonGivenCA(t *testing.T) {
	f := agenttest.New(t, "process")
	// A CA made elsewhere (here by the package, in another dir).
	given, err := deviceca.Create(t.TempDir(), "site CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg := config(t, f)
	cfg.DeviceCACert = given.CertFile()
	cfg.DeviceCAKey = filepath.Join(filepath.Dir(given.CertFile()), deviceca.KeyFile)
	d, _ := start(t, cfg)
	if !d.CA().Cert.Equal(given.Cert) {
		t.Error("the daemon does not use the CA given")
	}
	verifyServes(t, d.BrokerTLS(), given, "gw.test")
	if _, err := os.Stat(filepath.Join(f.DataDir, "ca")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("with a CA given the daemon made one too: %v", err)
	}
}

func TestNewRefusesBadInput(t *testing.T) {
	f := agenttest.New(t, "process")
	garbage := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(garbage, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, c := range []struct {
		name   string
		edit   func(*daemon.Config)
		config bool // ErrConfig
		want   []string
	}{
		{"service connection string", func(c *daemon.Config) {
			c.ConnectionString = "HostName=h;SharedAccessKeyName=owner;SharedAccessKey=" + key
		}, true, []string{"the daemon needs a device's"}},
		{"bad connection string", func(c *daemon.Config) { c.ConnectionString = "HostName=h" }, true, []string{"daemon:"}},
		{"CA cert without key", func(c *daemon.Config) { c.DeviceCACert = garbage }, true, []string{"go together"}},
		{"CA cert garbage", func(c *daemon.Config) { c.DeviceCACert, c.DeviceCAKey = garbage, garbage }, false, []string{garbage, "no PEM CERTIFICATE"}},
		{"bad runtime", func(c *daemon.Config) { c.Runtime = "vm" }, false, []string{"runtime vm"}},
	} {
		cfg := config(t, f)
		c.edit(&cfg)
		_, err := daemon.New(cfg)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if errors.Is(err, daemon.ErrConfig) != c.config {
			t.Errorf("%s: ErrConfig %v, want %v: %v", c.name, errors.Is(err, daemon.ErrConfig), c.config, err)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", c.name, err, w)
			}
		}
		// What New opened is closed again: the store opens.
		if d, err := daemon.New(config(t, f)); err != nil {
			t.Errorf("%s: a daemon after the failed one: %v", c.name, err)
		} else {
			d.Close()
		}
	}
}

// TestRunStopsWhenAPartFails: the management API's listener closed under
// it, the daemon stops the other parts and says which failed.
func TestRunStopsWhenAPartFails(t *testing.T) {
	f := agenttest.New(t, "process")
	cfg := config(t, f)
	l, err := net.Listen("unix", cfg.MgmtSocket)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MgmtListener = l
	d, err := daemon.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(context.Background()) }()
	time.Sleep(100 * time.Millisecond) // let it start; the result does not depend on it
	l.Close()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "management API") {
			t.Errorf("run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the daemon did not stop after its management API failed")
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// TestStopSendsTheLastReport: a daemon stopping stops its modules, then
// reports that in the $edgeAgent twin, and that report reaches the hub before
// Run returns: the syncer is stopped last (and flushes its outbox first,
// which internal/syncer's TestFlushSendsTheOutbox checks).
func TestStopSendsTheLastReport(t *testing.T) {
	f := agenttest.New(t, "process")
	f.Deploy(t, map[string]any{"m": map[string]any{"image": f.Image, "restartPolicy": "always"}})
	status := func() string {
		m := f.ModuleReported(t, "m")
		s, _ := m["runtimeStatus"].(string)
		return s
	}
	_, stop := start(t, config(t, f))
	agenttest.Eventually(t, 60*time.Second, "m running at the hub", func() bool { return status() == "running" })
	stop()
	if s := status(); s != "stopped" {
		t.Errorf("after the daemon stopped, the hub has m %q, want stopped", s)
	}
}
