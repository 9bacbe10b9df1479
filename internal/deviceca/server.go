package deviceca

import (
	"context"
	"crypto/tls"
	"log/slog"
	"sync"
	"time"
)

// DefaultCheckInterval is how often a ServerCert looks whether it is due for
// renewal.
const DefaultCheckInterval = time.Hour

// ServerCert is a TLS server certificate from the CA that renews itself
// before it expires: GetCertificate always hands out the current one, so a
// server using it needs no restart. Run checks it periodically.
type ServerCert struct {
	ca  *CA
	req ServerRequest
	now func() time.Time
	log *slog.Logger

	mu  sync.Mutex
	cur *Issued
}

// NewServerCert issues a server certificate for req (its NotAfter is
// ignored: each certificate gets ServerLifetime) and returns it, renewing.
func (ca *CA) NewServerCert(req ServerRequest, now func() time.Time, log *slog.Logger) (*ServerCert, error) {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	req.NotAfter = time.Time{}
	s := &ServerCert{ca: ca, req: req, now: now, log: log}
	iss, err := ca.IssueServer(req, now())
	if err != nil {
		return nil, err
	}
	s.cur = iss
	return s, nil
}

// Current returns the certificate handed out now.
func (s *ServerCert) Current() *Issued {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// GetCertificate is for tls.Config.GetCertificate.
func (s *ServerCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := s.Current().TLS
	return &c, nil
}

// TLSConfig returns a server TLS configuration (TLS 1.2 at least) that
// hands out the current certificate.
func (s *ServerCert) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.GetCertificate}
}

// RenewIfDue issues a new certificate when less than a third of the current
// one's life is left, and reports whether it did.
func (s *ServerCert) RenewIfDue() (bool, error) {
	now := s.now()
	if !needsRenewal(s.Current().Cert, now) {
		return false, nil
	}
	iss, err := s.ca.IssueServer(s.req, now)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	s.cur = iss
	s.mu.Unlock()
	s.log.Info("server certificate renewed", "cn", s.req.CommonName, "notAfter", iss.NotAfter.UTC().Format(time.RFC3339))
	return true, nil
}

// Run renews the certificate when due, looking every interval (default
// DefaultCheckInterval), until ctx is done.
func (s *ServerCert) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultCheckInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.RenewIfDue(); err != nil {
				s.log.Error("renew the server certificate; the current one is kept", "cn", s.req.CommonName, "err", err)
			}
		}
	}
}
