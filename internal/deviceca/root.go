package deviceca

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Root is the certificate a leaf device (or anything else reaching the
// daemon's broker) must trust: the root of the device CA's chain, read
// from the CA's certificate file without its key, so offline and with no
// daemon running.
type Root struct {
	// File is the certificate file it was read from.
	File string
	// CA is the device CA's certificate (the file's first).
	CA *x509.Certificate
	// Cert is the root: the file's last certificate.
	Cert *x509.Certificate
	// SelfSigned is whether Cert is a root indeed (issued by itself). A
	// file that stops below its root makes PEM all of its certificates:
	// clients whose TLS stack accepts an intermediate as a trust anchor (Go)
	// are then served, others (OpenSSL, so Node) need the root too.
	SelfSigned bool
	// PEM is what to install on a leaf device: Cert when SelfSigned, else
	// the file's certificates.
	PEM []byte
}

// Fingerprint is the SHA-256 fingerprint of cert as openssl prints it
// (openssl x509 -noout -fingerprint -sha256): upper-case hex bytes joined
// by colons.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// ErrNoCA is matched (errors.Is) by ReadRoot's error when there is no CA
// file: the daemon has not started with this data dir yet.
var ErrNoCA = errors.New("no device CA")

// OwnCertFile is the certificate file of the CA the daemon makes in its
// data dir dataDir.
func OwnCertFile(dataDir string) string { return filepath.Join(dataDir, "ca", CertFile) }

// ReadRoot reads the root a leaf device must trust from a device CA's
// certificate file: the CA's certificate, then its chain up to the root.
func ReadRoot(certFile string) (*Root, error) {
	b, err := os.ReadFile(certFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist", ErrNoCA, certFile)
	}
	if err != nil {
		return nil, fmt.Errorf("device CA certificate: %w", err)
	}
	var certs []*x509.Certificate
	var blocks [][]byte
	for rest := b; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("device CA certificate %s: certificate %d is not valid: %w", certFile, len(certs)+1, err)
		}
		certs = append(certs, c)
		blocks = append(blocks, pem.EncodeToMemory(block))
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("device CA certificate %s: no PEM CERTIFICATE block in it", certFile)
	}
	last := certs[len(certs)-1]
	r := &Root{File: certFile, CA: certs[0], Cert: last}
	r.SelfSigned = bytes.Equal(last.RawIssuer, last.RawSubject) && last.CheckSignatureFrom(last) == nil
	if r.SelfSigned {
		r.PEM = blocks[len(blocks)-1]
	} else {
		r.PEM = bytes.Join(blocks, nil)
	}
	return r, nil
}
