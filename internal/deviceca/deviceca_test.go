package deviceca

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadOrCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	now := time.Now()
	ca, created, err := LoadOrCreate(dir, "outpost device CA dev", now)
	if err != nil || !created {
		t.Fatalf("first start: created %v, err %v", created, err)
	}
	if !ca.Cert.IsCA || ca.Cert.Subject.CommonName != "outpost device CA dev" {
		t.Errorf("CA %+v", ca.Cert.Subject)
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("CA dir: %v %v", fi.Mode(), err)
	}
	again, created, err := LoadOrCreate(dir, "ignored", now)
	if err != nil || created || !again.Cert.Equal(ca.Cert) {
		t.Fatalf("second start: created %v, err %v, same %v", created, err, err == nil && again.Cert.Equal(ca.Cert))
	}
	// openssl, not our code, reads what we wrote as a CA.
	if out, err := exec.Command("openssl", "x509", "-in", filepath.Join(dir, CertFile), "-noout", "-text").CombinedOutput(); err == nil {
		if !strings.Contains(string(out), "CA:TRUE") {
			t.Errorf("openssl does not see a CA:\n%s", out)
		}
	} else {
		t.Logf("openssl: %v", err)
	}
	// With less than a third of its life left, a new one is made.
	later := now.Add(CALifetime * 3 / 4)
	renewed, created, err := LoadOrCreate(dir, "outpost device CA dev", later)
	if err != nil || !created || renewed.Cert.Equal(ca.Cert) {
		t.Fatalf("renewal: created %v, err %v", created, err)
	}
	// Only one of the two files: refused, named.
	if err := os.Remove(filepath.Join(dir, KeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreate(dir, "x", now); err == nil || !strings.Contains(err.Error(), "only one of") {
		t.Errorf("half a CA: %v", err)
	}
}

// opensslCA makes a CA (or, with ca false, a leaf) with openssl in dir and
// returns its certificate and key files.
func opensslCA(t *testing.T, dir, name string, ca bool) (string, string) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	cert, key := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	ext := "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
	if !ca {
		ext = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
	}
	extFile := filepath.Join(dir, name+".ext")
	if err := os.WriteFile(extFile, []byte("[v3]\n"+ext), 0o600); err != nil {
		t.Fatal(err)
	}
	err := exec.Command("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN="+name, "-config", "/dev/null", "-extensions", "v3", "-extfile", extFile).Run()
	if err != nil {
		// Older openssl wants -config with the section; try with it.
		cfg := filepath.Join(dir, name+".cnf")
		_ = os.WriteFile(cfg, []byte("[req]\ndistinguished_name=dn\n[dn]\n[v3]\n"+ext), 0o600)
		out, err := exec.Command("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
			"-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN="+name, "-config", cfg, "-extensions", "v3").CombinedOutput()
		if err != nil {
			t.Fatalf("openssl: %v\n%s", err, out)
		}
	}
	return cert, key
}

func TestLoadGivenCA(t *testing.T) {
	dir := t.TempDir()
	cert, key := opensslCA(t, dir, "edge-ca", true)
	ca, err := Load(cert, key, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if ca.Cert.Subject.CommonName != "edge-ca" || ca.CertFile() != cert {
		t.Errorf("loaded %q from %s", ca.Cert.Subject.CommonName, ca.CertFile())
	}
	// A server certificate from it verifies against it.
	iss, err := ca.IssueServer(ServerRequest{CommonName: "gw.example", Hosts: []string{"localhost", "127.0.0.1"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.TrustBundle())
	if _, err := iss.Cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "gw.example"}); err != nil {
		t.Errorf("server certificate from a given CA: %v", err)
	}

	otherCert, otherKey := opensslCA(t, dir, "other-ca", true)
	leafCert, leafKey := opensslCA(t, dir, "leaf", false)
	garbage := filepath.Join(dir, "garbage.pem")
	_ = os.WriteFile(garbage, []byte("not PEM\n"), 0o600)
	for _, c := range []struct {
		name, cert, key string
		want            []string
	}{
		{"missing cert", filepath.Join(dir, "nope.pem"), key, []string{"device CA certificate", "nope.pem", "no such file"}},
		{"missing key", cert, filepath.Join(dir, "nope.key"), []string{"device CA key", "nope.key"}},
		{"garbage cert", garbage, key, []string{garbage, "no PEM CERTIFICATE"}},
		{"garbage key", cert, garbage, []string{garbage, "no PEM private key"}},
		{"mismatched", cert, otherKey, []string{otherKey, "is not the key of the certificate", cert}},
		{"mismatched other way", otherCert, key, []string{key, otherCert}},
		{"not a CA", leafCert, leafKey, []string{leafCert, "is not a CA certificate"}},
	} {
		_, err := Load(c.cert, c.key, time.Now())
		if err == nil {
			t.Errorf("%s: loaded", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", c.name, err, w)
			}
		}
	}
	if _, err := Load(cert, key, time.Now().Add(60*24*time.Hour)); err == nil || !strings.Contains(err.Error(), "not now") {
		t.Errorf("expired CA: %v", err)
	}
}

func TestServerCertTLSAndRenewal(t *testing.T) {
	ca, err := Create(t.TempDir(), "test CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	now := func() time.Time { return clock }
	sc, err := ca.NewServerCert(ServerRequest{CommonName: "gw.test", Hosts: []string{"localhost", "127.0.0.1", "::1"}}, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := sc.Current()
	if got := first.NotAfter.Sub(clock); got != ServerLifetime {
		t.Errorf("lifetime %v", got)
	}

	ln, err := tls.Listen("tcp", "127.0.0.1:0", sc.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.TrustBundle())
	dialSerial := func(serverName string) (string, error) {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: serverName, Time: now})
		if err != nil {
			return "", err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
	}
	for _, name := range []string{"gw.test", "localhost", "127.0.0.1", "::1"} {
		s, err := dialSerial(name)
		if err != nil || s != first.Cert.SerialNumber.String() {
			t.Errorf("TLS to %s: serial %s, err %v", name, s, err)
		}
	}
	if _, err := dialSerial("elsewhere.test"); err == nil {
		t.Error("the certificate is valid for a host it was not issued for")
	}

	// Not due: kept. Due (less than a third left): a new one, served at once.
	clock = clock.Add(ServerLifetime / 2)
	if renewed, err := sc.RenewIfDue(); err != nil || renewed {
		t.Fatalf("at half life: renewed %v, err %v", renewed, err)
	}
	clock = clock.Add(ServerLifetime / 4)
	if renewed, err := sc.RenewIfDue(); err != nil || !renewed {
		t.Fatalf("at three quarters: renewed %v, err %v", renewed, err)
	}
	second := sc.Current()
	if second.Cert.SerialNumber.Cmp(first.Cert.SerialNumber) == 0 || !second.NotAfter.After(first.NotAfter) {
		t.Fatal("not renewed")
	}
	if s, err := dialSerial("localhost"); err != nil || s != second.Cert.SerialNumber.String() {
		t.Errorf("after renewal the listener serves serial %s (err %v), want the new %s", s, err, second.Cert.SerialNumber)
	}
}

func TestIssueServerLimits(t *testing.T) {
	now := time.Now()
	ca, err := Create(t.TempDir(), "test CA", now)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := ca.IssueServer(ServerRequest{CommonName: "mod", NotAfter: now.Add(10 * 365 * 24 * time.Hour)}, now)
	if err != nil || !iss.NotAfter.Equal(now.Add(ServerLifetime)) {
		t.Errorf("capped expiry %v, err %v", iss.NotAfter, err)
	}
	if _, err := ca.IssueServer(ServerRequest{CommonName: "mod", NotAfter: now.Add(-time.Hour)}, now); err == nil || !strings.Contains(err.Error(), "not in the future") {
		t.Errorf("past expiry: %v", err)
	}
	if _, err := ca.IssueServer(ServerRequest{CommonName: strings.Repeat("a", 65)}, now); err == nil || !strings.Contains(err.Error(), "at most 64") {
		t.Errorf("long CN: %v", err)
	}
	if _, err := ca.IssueServer(ServerRequest{}, now); err == nil {
		t.Error("empty CN issued")
	}
}
