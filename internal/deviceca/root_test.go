package deviceca

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReadRoot: the root of a CA file is its last certificate when that is
// self-signed (the daemon's own CA; a given intermediate followed by its
// root), and a file that stops below its root gives all its certificates,
// marked not self-signed. Fingerprint is openssl's.
func TestReadRoot(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	root, err := Create(filepath.Join(dir, "root"), "test root", now)
	if err != nil {
		t.Fatal(err)
	}
	own, err := ReadRoot(root.CertFile())
	if err != nil {
		t.Fatal(err)
	}
	if !own.SelfSigned || !own.Cert.Equal(root.Cert) || !own.CA.Equal(root.Cert) || !bytes.Equal(own.PEM, root.TrustBundle()) {
		t.Errorf("own CA: self-signed %v, root %q, PEM equal %v", own.SelfSigned, own.Cert.Subject, bytes.Equal(own.PEM, root.TrustBundle()))
	}

	// An intermediate CA issued by root, as an operator gives one.
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "edge intermediate"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true, IsCA: true,
	}
	inter, _, interPEM, _, err := certify(tmpl, root.Cert, root.Key)
	if err != nil {
		t.Fatal(err)
	}
	chain := filepath.Join(dir, "chain.pem")
	if err := os.WriteFile(chain, append(append([]byte(nil), interPEM...), root.TrustBundle()...), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := ReadRoot(chain)
	if err != nil {
		t.Fatal(err)
	}
	if !r.SelfSigned || !r.Cert.Equal(root.Cert) || !r.CA.Equal(inter) || !bytes.Equal(r.PEM, root.TrustBundle()) {
		t.Errorf("intermediate + root: self-signed %v, root %q, CA %q", r.SelfSigned, r.Cert.Subject, r.CA.Subject)
	}
	alone := filepath.Join(dir, "inter.pem")
	if err := os.WriteFile(alone, interPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err = ReadRoot(alone)
	if err != nil {
		t.Fatal(err)
	}
	if r.SelfSigned || !r.Cert.Equal(inter) || !bytes.Equal(r.PEM, interPEM) {
		t.Errorf("intermediate alone: self-signed %v, cert %q", r.SelfSigned, r.Cert.Subject)
	}

	// openssl's fingerprint of the same file.
	if _, err := exec.LookPath("openssl"); err == nil {
		out, err := exec.Command("openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", root.CertFile()).Output()
		if err != nil {
			t.Fatal(err)
		}
		_, want, _ := strings.Cut(strings.TrimSpace(string(out)), "=")
		if got := Fingerprint(root.Cert); got != want {
			t.Errorf("Fingerprint %s, openssl %s", got, want)
		}
	} else if got := Fingerprint(root.Cert); len(got) != 32*3-1 {
		t.Errorf("Fingerprint %q is not 32 hex bytes", got)
	}

	// No file: ErrNoCA, naming it. Not PEM: named too.
	missing := OwnCertFile(filepath.Join(dir, "never-ran"))
	if _, err := ReadRoot(missing); !errors.Is(err, ErrNoCA) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v", err)
	}
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadRoot(garbage); err == nil || errors.Is(err, ErrNoCA) || !strings.Contains(err.Error(), garbage) || !strings.Contains(err.Error(), "no PEM CERTIFICATE") {
		t.Errorf("no certificate in the file: %v", err)
	}
}
