package cli

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/deviceca"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
)

// TestStatusShowsBrokerLinks: a module connects to a real daemon's broker
// with paho, reads its twin and reports; `outpost status` shows it
// connected, with the desired version the broker sent it and the reported
// version its report was acknowledged with (table and -o json), then
// disconnected once it has left.
func TestStatusShowsBrokerLinks(t *testing.T) {
	f := agenttest.New(t, "process")
	ctx := t.Context()
	m, err := f.Owner.CreateModule(ctx, hubapi.Module{DeviceID: f.DeviceID, ModuleID: "probe"})
	if err != nil {
		t.Fatal(err)
	}
	tw, err := f.Owner.PatchTwin(ctx, f.DeviceID, "probe", []byte(`{"properties":{"desired":{"interval":5}}}`), "")
	if err != nil {
		t.Fatal(err)
	}
	desired := tw.DesiredVersion()
	sock, addr := runDaemonWithBroker(t, f, "gw.test")

	pem, err := os.ReadFile(filepath.Join(f.DataDir, "ca", deviceca.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	host := f.Hub.HostName()
	msgs := make(chan paho.Message, 16)
	var c paho.Client
	// The daemon knows the module's key once it has synced: until then the
	// broker refuses it.
	agenttest.Eventually(t, 20*time.Second, "the broker to accept the module", func() bool {
		token, err := identity.NewSAS(host+"/devices/"+f.DeviceID+"/modules/probe", m.Authentication.SymmetricKey.PrimaryKey, time.Now().Add(time.Hour), "")
		if err != nil {
			t.Fatal(err)
		}
		c = paho.NewClient(paho.NewClientOptions().AddBroker("ssl://" + addr).
			SetClientID(f.DeviceID + "/probe").SetUsername(host + "/" + f.DeviceID + "/probe/?api-version=2021-04-12").SetPassword(token).
			SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: "localhost"}).SetProtocolVersion(4).
			SetAutoReconnect(false).SetConnectRetry(false).
			SetDefaultPublishHandler(func(_ paho.Client, msg paho.Message) { msgs <- msg }))
		tok := c.Connect()
		return tok.WaitTimeout(10*time.Second) && tok.Error() == nil
	})
	defer c.Disconnect(100)
	wait := func(tok paho.Token) {
		t.Helper()
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("mqtt: %v", tok.Error())
		}
	}
	answer := func(prefix string) string {
		t.Helper()
		select {
		case msg := <-msgs:
			if !strings.HasPrefix(msg.Topic(), prefix) {
				t.Fatalf("got %s %s, want %s…", msg.Topic(), msg.Payload(), prefix)
			}
			return msg.Topic()
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s… within 10 s", prefix)
		}
		return ""
	}
	wait(c.Subscribe("$iothub/twin/res/#", 0, nil))
	wait(c.Publish("$iothub/twin/GET/?$rid=1", 0, false, ""))
	answer("$iothub/twin/res/200/?$rid=1")
	wait(c.Publish("$iothub/twin/PATCH/properties/reported/?$rid=2", 0, false, `{"probe":true}`))
	topic := answer("$iothub/twin/res/204/?$rid=2&$version=")
	reported, err := strconv.ParseInt(topic[strings.LastIndex(topic, "=")+1:], 10, 64)
	if err != nil {
		t.Fatalf("204 topic %s: %v", topic, err)
	}

	code, out, _ := run(t, "status", "--mgmt-socket", sock, "-o", "json")
	var st mgmtclient.Status
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil {
		t.Fatalf("status -o json: %d %v\n%s", code, err, out)
	}
	if len(st.Broker.Modules) != 1 {
		t.Fatalf("status -o json: broker %+v, want probe", st.Broker)
	}
	if got := st.Broker.Modules[0]; got.ModuleID != "probe" || !got.Connected || got.DesiredVersion != desired || got.ReportedVersion != reported || time.Since(got.Since) > time.Minute {
		t.Errorf("status -o json: %+v, want probe connected, desired %d, reported %d", got, desired, reported)
	}
	code, out, _ = run(t, "status", "--mgmt-socket", sock)
	t.Logf("outpost status:\n%s", out)
	row := tableRow(out, "probe")
	if code != 0 || !strings.Contains(out, "BROKER") || len(row) != 9 || row[6] != "connected" || row[1] != strconv.FormatInt(desired, 10) ||
		row[2] != strconv.FormatInt(reported, 10) || row[8] != strconv.FormatInt(desired, 10) || row[4] != strconv.FormatInt(desired, 10) {
		t.Errorf("status: %d, probe's row %q\n%s", code, row, out)
	}
	if row := tableRow(out, "$edgeAgent"); len(row) != 8 || row[6] != "-" || row[7] != "-" {
		t.Errorf("status: $edgeAgent's row %q (never connects to the broker)\n%s", row, out)
	}
	// The report reaches the hub: the hub's reported version, as the next
	// sync answer says, is the one the broker acknowledged, none queued.
	agenttest.Eventually(t, 20*time.Second, "probe's report at the hub in outpost status", func() bool {
		_, out, _ := run(t, "status", "--mgmt-socket", sock)
		row := tableRow(out, "probe")
		return len(row) == 9 && row[3] == "0" && row[5] == strconv.FormatInt(reported, 10) &&
			strings.Contains(out, "hub twins:  versions as of the last sync")
	})
	hub, err := f.Owner.GetTwin(ctx, f.DeviceID, "probe")
	if err != nil || hub.ReportedVersion() != reported {
		t.Errorf("the hub's twin of probe: reported $version %d (%v), outpost status said %d", hub.ReportedVersion(), err, reported)
	}

	c.Disconnect(100)
	agenttest.Eventually(t, 20*time.Second, "probe disconnected in outpost status", func() bool {
		_, out, _ := run(t, "status", "--mgmt-socket", sock)
		row := tableRow(out, "probe")
		return len(row) > 6 && row[6] == "disconnected"
	})
}

// runDaemonWithBroker runs f's daemon (as runDaemon) with its broker on a
// free loopback port and --gateway-hostname gateway, and returns its
// management socket and the broker's address.
func runDaemonWithBroker(t *testing.T, f *agenttest.Fixture, gateway string) (sock, addr string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = l.Addr().String()
	l.Close() // the daemon takes an address
	sock = filepath.Join(t.TempDir(), "mgmt.sock")
	runDaemon(t, sock, "--connection-string", f.DeviceCS, "--ca", f.Hub.CAFile, "--data", f.DataDir,
		"--runtime", "process", "--mgmt-socket", sock, "--gateway-hostname", gateway, "--broker-listen", addr)
	return sock, addr
}

// tableRow is the fields of the line of a table starting with first.
func tableRow(out, first string) []string {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == first {
			return f
		}
	}
	return nil
}
