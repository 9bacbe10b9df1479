// Package deviceca is the device's certificate authority, IoT Edge's "edge
// CA": the daemon makes one in its data dir on first start (ECDSA P-256,
// key 0600), or uses one the operator gives it, and issues from it the
// module broker's TLS server certificate and the server certificates
// modules ask the workload API for. Its certificate is the trust bundle
// modules are handed (GET /trust-bundle).
package deviceca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/outpost-edge/outpost/internal/atomicfile"
)

// Files of a CA the daemon made itself, in its CA dir.
const (
	CertFile = "device-ca.pem"
	KeyFile  = "device-ca.key.pem"
)

// Validity of what the package makes.
const (
	// CALifetime is how long a CA made by Create is valid. The daemon makes
	// a new one when its own has less than a third of this left.
	CALifetime = 5 * 365 * 24 * time.Hour
	// ServerLifetime is the longest a server certificate is issued for.
	ServerLifetime = 90 * 24 * time.Hour
)

// clockSkew backdates NotBefore so that a peer whose clock is a little
// behind still accepts a certificate just issued.
const clockSkew = 5 * time.Minute

// CA is a certificate authority: a CA certificate and its private key.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer

	bundle   []byte // the PEM of the certificate file, chain included
	certFile string
}

// TrustBundle returns the PEM certificates modules should trust: the CA's
// certificate file as it is (with the chain above it when it holds one).
func (ca *CA) TrustBundle() []byte { return bytes.Clone(ca.bundle) }

// CertFile is the file the CA's certificate was read from or written to.
func (ca *CA) CertFile() string { return ca.certFile }

// Load reads a CA from a PEM certificate file and a PEM private key file
// (PKCS#8, SEC 1 "EC PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY"). The first
// certificate of certFile must be a CA certificate (basic constraints
// CA:TRUE, allowed to sign certificates), valid now, whose public key is
// keyFile's; more certificates after it are its chain, kept in the trust
// bundle. Errors name the file and what is wrong with it.
func Load(certFile, keyFile string, now time.Time) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("device CA certificate: %w", err)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("device CA certificate %s: %w", certFile, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("device CA key: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("device CA key %s: %w", keyFile, err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("device CA key %s is not the key of the certificate %s: give the key the certificate was made for", keyFile, certFile)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("device CA certificate %s (subject %q) is not a CA certificate (basic constraints CA:TRUE): give a CA certificate, or leave --device-ca-cert unset and the daemon makes its own", certFile, cert.Subject.String())
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("device CA certificate %s may not sign certificates (its key usage lacks keyCertSign)", certFile)
	}
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return nil, fmt.Errorf("device CA certificate %s is valid from %s to %s, not now (%s): renew it, or check the clock",
			certFile, cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return &CA{Cert: cert, Key: key, bundle: certPEM, certFile: certFile}, nil
}

// LoadOrCreate loads the CA the daemon made in dir, or makes one there (the
// directory 0700, the key 0600) when there is none, or when the one there
// has less than a third of its life left. commonName names a new CA.
func LoadOrCreate(dir, commonName string, now time.Time) (ca *CA, created bool, err error) {
	certFile, keyFile := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	_, certErr := os.Stat(certFile)
	_, keyErr := os.Stat(keyFile)
	if certErr == nil && keyErr == nil {
		ca, err := Load(certFile, keyFile, now)
		if err != nil {
			return nil, false, fmt.Errorf("%w (the daemon made it in %s; remove both files to have a new one made)", err, dir)
		}
		if !needsRenewal(ca.Cert, now) {
			return ca, false, nil
		}
	} else if !errors.Is(certErr, os.ErrNotExist) || !errors.Is(keyErr, os.ErrNotExist) {
		if certErr == nil || keyErr == nil {
			return nil, false, fmt.Errorf("device CA in %s: only one of %s and %s is there: remove it to have a new CA made", dir, CertFile, KeyFile)
		}
		return nil, false, fmt.Errorf("device CA: %w", errors.Join(certErr, keyErr))
	}
	ca, err = Create(dir, commonName, now)
	return ca, err == nil, err
}

// Create makes a new CA in dir, replacing any there.
func Create(dir, commonName string, now time.Time) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("device CA: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"outpost"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	cert, key, certPEM, keyPEM, err := certify(tmpl, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("device CA: %w", err)
	}
	certFile, keyFile := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	// The key first: a certificate without its key is not left behind.
	if err := atomicfile.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("device CA key: %w", err)
	}
	if err := atomicfile.WriteFile(certFile, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("device CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key, bundle: certPEM, certFile: certFile}, nil
}

// certify makes a new P-256 key and a certificate for it from tmpl, signed
// by parent with parentKey (self-signed when parent is nil), and returns both
// also as PEM.
func certify(tmpl, parent *x509.Certificate, parentKey crypto.Signer) (cert *x509.Certificate, key *ecdsa.PrivateKey, certPEM, keyPEM []byte, err error) {
	if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, nil, nil, nil, err
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if cert, err = x509.ParseCertificate(der); err != nil {
		return nil, nil, nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return cert, key, certPEM, keyPEM, nil
}

// needsRenewal reports whether less than a third of cert's life is left.
func needsRenewal(cert *x509.Certificate, now time.Time) bool {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotAfter.Sub(now) < life/3
}

// ServerRequest is what a server certificate is issued for.
type ServerRequest struct {
	CommonName string
	// Hosts are DNS names and IP addresses (as text) the certificate is
	// valid for; CommonName is added when it is a host name or address.
	Hosts []string
	// NotAfter is capped at ServerLifetime from now and at the CA's own
	// expiry; zero means the longest allowed.
	NotAfter time.Time
}

// Issued is a certificate issued by the CA with its new private key.
type Issued struct {
	Cert     *x509.Certificate
	CertPEM  []byte // the certificate, then the CA's chain (the trust bundle)
	KeyPEM   []byte // PKCS#8
	TLS      tls.Certificate
	NotAfter time.Time
}

// IssueServer issues a TLS server certificate with a new ECDSA P-256 key.
func (ca *CA) IssueServer(req ServerRequest, now time.Time) (*Issued, error) {
	if req.CommonName == "" {
		return nil, errors.New("issue server certificate: common name is empty")
	}
	if len(req.CommonName) > 64 {
		return nil, fmt.Errorf("issue server certificate: common name %.20q… is %d characters, at most 64 are allowed", req.CommonName, len(req.CommonName))
	}
	notAfter := now.Add(ServerLifetime)
	if !req.NotAfter.IsZero() && req.NotAfter.Before(notAfter) {
		notAfter = req.NotAfter
	}
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("issue server certificate: expiry %s is not in the future", notAfter.UTC().Format(time.RFC3339))
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: req.CommonName},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	seen := map[string]bool{}
	for _, h := range append([]string{req.CommonName}, req.Hosts...) {
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if isHostName(h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	cert, _, certPEM, keyPEM, err := certify(tmpl, ca.Cert, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issue server certificate: %w", err)
	}
	certPEM = append(certPEM, ca.bundle...)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	pair.Leaf = cert
	return &Issued{Cert: cert, CertPEM: certPEM, KeyPEM: keyPEM, TLS: pair, NotAfter: notAfter}, nil
}

// isHostName reports whether h can be a DNS name in a certificate: letters,
// digits, '-', '.' and '_' (and a leading "*." wildcard).
func isHostName(h string) bool {
	h = trimWildcard(h)
	if h == "" || len(h) > 253 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

func trimWildcard(h string) string {
	if len(h) > 2 && h[:2] == "*." {
		return h[2:]
	}
	return h
}

// parseCert returns the first certificate of a PEM file.
func parseCert(b []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("no PEM CERTIFICATE block in it")
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("not a valid certificate: %w", err)
		}
		return cert, nil
	}
}

// parseKey returns the first private key of a PEM file.
func parseKey(b []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("no PEM private key block (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY) in it")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the key is encrypted: give it unencrypted (mode 0600), e.g. openssl pkey -in KEY -out KEY.plain")
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("not a valid %s: %w", block.Type, err)
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("a %T key cannot sign", key)
		}
		return s, nil
	}
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	switch k := a.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
		return k.(equaler).Equal(b)
	}
	return false
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n.Add(n, big.NewInt(1))
}
