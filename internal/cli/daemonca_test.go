package cli

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
)

// TestDaemonCATrust: a real daemon with --gateway-hostname edge-gw.test
// serves its broker a certificate that crypto/x509 verifies, for that name
// and for localhost and the loopback addresses, against what `outpost
// daemon ca` prints from the data dir alone (for another name it does not);
// `outpost status` and `outpost check` show the same fingerprint.
func TestDaemonCATrust(t *testing.T) {
	f := agenttest.New(t, "process")
	sock, addr := runDaemonWithBroker(t, f, "edge-gw.test")

	code, pemOut, errOut := run(t, "daemon", "ca", "--data", f.DataDir)
	if code != 0 || !strings.HasPrefix(pemOut, "-----BEGIN CERTIFICATE-----") || strings.Count(pemOut, "BEGIN CERTIFICATE") != 1 {
		t.Fatalf("daemon ca: %d\n%s\n%s", code, pemOut, errOut)
	}
	if !strings.Contains(errOut, filepath.Join(f.DataDir, "ca", "device-ca.pem")) || !strings.Contains(errOut, "SHA-256 fingerprint") {
		t.Errorf("daemon ca's stderr does not name the file and fingerprint:\n%s", errOut)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(pemOut)) {
		t.Fatalf("daemon ca printed no certificate:\n%s", pemOut)
	}

	// The broker's chain, as served, taken without verifying: then verified
	// by crypto/x509 for each name.
	var chain []*x509.Certificate
	agenttest.Eventually(t, 20*time.Second, "the broker to serve TLS", func() bool {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return false
		}
		defer c.Close()
		chain = c.ConnectionState().PeerCertificates
		return true
	})
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	for _, name := range []string{"edge-gw.test", "localhost", "127.0.0.1", "::1"} {
		if _, err := chain[0].Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter}); err != nil {
			t.Errorf("the broker's certificate for %s does not verify against daemon ca's: %v", name, err)
		}
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{DNSName: "elsewhere.test", Roots: roots, Intermediates: inter}); err == nil {
		t.Error("the broker's certificate verifies for a name it was not issued for")
	}
	// And a TLS client that trusts only daemon ca's output connects.
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "edge-gw.test"})
	if err != nil {
		t.Fatalf("TLS to the broker as edge-gw.test trusting daemon ca's root: %v", err)
	}
	c.Close()

	var info caInfo
	code, out, _ := run(t, "daemon", "ca", "--data", f.DataDir, "-o", "json")
	if err := json.Unmarshal([]byte(out), &info); code != 0 || err != nil || info.PEM != pemOut || !info.SelfSigned || info.Fingerprint == "" {
		t.Fatalf("daemon ca -o json: %d %v %+v", code, err, info)
	}
	var st mgmtclient.Status
	code, out, _ = run(t, "status", "--mgmt-socket", sock, "-o", "json")
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || st.DeviceCA == nil {
		t.Fatalf("status -o json: %d %v\n%s", code, err, out)
	}
	if st.DeviceCA.Fingerprint != info.Fingerprint || st.DeviceCA.File != info.File || !slices.Contains(st.DeviceCA.BrokerNames, "edge-gw.test") ||
		!slices.Contains(st.DeviceCA.BrokerNames, "::1") || !st.DeviceCA.BrokerNotAfter.Equal(chain[0].NotAfter) {
		t.Errorf("status' device CA %+v, want daemon ca's %s and the broker's names", st.DeviceCA, info.Fingerprint)
	}
	_, out, _ = run(t, "status", "--mgmt-socket", sock)
	if !strings.Contains(out, info.Fingerprint) || !strings.Contains(out, "edge-gw.test, localhost, 127.0.0.1, ::1") {
		t.Errorf("status does not show the CA's fingerprint and the broker's names:\n%s", out)
	}
	_, out, _ = run(t, "check", "--data", f.DataDir, "--mgmt-socket", sock, "--connection-string", f.DeviceCS, "--ca", f.Hub.CAFile)
	if !strings.Contains(out, "✓ device CA: ") || !strings.Contains(out, info.Fingerprint) {
		t.Errorf("check does not show the CA's fingerprint %s:\n%s", info.Fingerprint, out)
	}
}

// TestDaemonCAErrors: with no CA in the data dir (the daemon never ran
// there) or a --device-ca-cert that does not exist, daemon ca exits 3 and
// says where it looked and what to do; a given CA file that stops below its
// root is printed whole with a warning.
func TestDaemonCAErrors(t *testing.T) {
	data := filepath.Join(t.TempDir(), "device")
	code, out, errOut := run(t, "daemon", "ca", "--data", data)
	if code != ExitNotFound || out != "" || !strings.Contains(errOut, filepath.Join(data, "ca", "device-ca.pem")+" does not exist") ||
		!strings.Contains(errOut, "start it once") {
		t.Errorf("no CA: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	missing := filepath.Join(t.TempDir(), "edge-ca.pem")
	code, _, errOut = run(t, "daemon", "ca", "--device-ca-cert", missing)
	if code != ExitNotFound || !strings.Contains(errOut, missing) || !strings.Contains(errOut, "check --device-ca-cert") {
		t.Errorf("missing --device-ca-cert: exit %d, stderr:\n%s", code, errOut)
	}
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = run(t, "daemon", "ca", "--device-ca-cert", garbage)
	if code != ExitFailure || !strings.Contains(errOut, garbage) || !strings.Contains(errOut, "no PEM CERTIFICATE") {
		t.Errorf("not a certificate: exit %d, stderr:\n%s", code, errOut)
	}
}
