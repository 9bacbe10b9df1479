package imagestore

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// Credential is one entry of a deployment's registryCredentials (IoT Edge's
// name): a registry address and the user name and password for it.
type Credential struct {
	Address  string
	Username string
	Password string
}

// dockerHubHosts are the names Docker Hub goes by.
var dockerHubHosts = map[string]bool{
	"docker.io": true, "index.docker.io": true, "registry-1.docker.io": true, "registry.hub.docker.com": true,
}

// registryHost reduces a credential address to the registry's host[:port]:
// no scheme, no path, lower case, Docker Hub's aliases as one.
func registryHost(addr string) string {
	a := strings.TrimSpace(addr)
	if i := strings.Index(a, "://"); i >= 0 {
		a = a[i+3:]
	}
	if i := strings.IndexByte(a, '/'); i >= 0 {
		a = a[:i]
	}
	a = strings.ToLower(a)
	if dockerHubHosts[a] {
		return name.DefaultRegistry
	}
	return a
}

// authFor picks the credentials for reg: the deployment's first, then the
// store's keychain (by default the device's docker config and credential
// helpers). It returns them with a description of where they came from, for
// error messages.
func (s *Store) authFor(ctx context.Context, reg name.Registry, creds []Credential) (authn.Authenticator, string) {
	host := registryHost(reg.RegistryStr())
	for _, c := range creds {
		if registryHost(c.Address) != host {
			continue
		}
		if c.Username == "" && c.Password == "" {
			break
		}
		return authn.FromConfig(authn.AuthConfig{Username: c.Username, Password: c.Password}),
			fmt.Sprintf("the deployment's registryCredentials for %s (username %q)", c.Address, c.Username)
	}
	where := "the device's docker config (DOCKER_CONFIG or ~/.docker/config.json, credential helpers)"
	if !s.defaultKeychain {
		where = "the keychain the daemon was given"
	}
	a, err := authn.Resolve(ctx, s.o.keychain, reg)
	if err != nil {
		s.log.Warn("registry credentials: keychain failed; trying anonymous", "registry", reg.RegistryStr(), "err", err)
		return authn.Anonymous, fmt.Sprintf("none (anonymous): looking in %s failed: %v", where, err)
	}
	if a == authn.Anonymous {
		return a, fmt.Sprintf("none (anonymous): no entry for %s in the deployment's registryCredentials nor in %s", reg.RegistryStr(), where)
	}
	return a, where
}

// isLoopback reports whether host (host[:port]) names this machine.
func isLoopback(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.Trim(h, "[]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// plainHTTPGuard refuses plain-HTTP requests to hosts not allowed them, before
// anything (credentials included) is sent.
type plainHTTPGuard struct {
	base     http.RoundTripper
	insecure func(host string) bool
}

func (g *plainHTTPGuard) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme == "http" && !g.allowed(r.URL.Host) {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, &PlainHTTPError{Host: r.URL.Host}
	}
	return g.base.RoundTrip(r)
}

func (g *plainHTTPGuard) allowed(host string) bool {
	return isLoopback(host) || (g.insecure != nil && g.insecure(host))
}

// RegistryAuth resolves the credentials for ref's registry as Pull would (the
// deployment's first, then the keychain), for an engine that pulls by itself
// (the docker runtime). It returns nil for anonymous access, the registry's
// host, which the engine wants beside the credentials, and where the
// credentials came from, for error messages.
func (s *Store) RegistryAuth(ctx context.Context, ref string, creds []Credential) (cfg *authn.AuthConfig, host, source string, err error) {
	r, err := s.parseRef(ref)
	if err != nil {
		return nil, "", "", err
	}
	reg := r.Context().Registry
	a, source := s.authFor(ctx, reg, creds)
	if a == authn.Anonymous {
		return nil, reg.RegistryStr(), source, nil
	}
	cfg, err = authn.Authorization(ctx, a)
	if err != nil {
		return nil, "", "", fmt.Errorf("registry credentials for %s from %s: %w", reg.RegistryStr(), source, err)
	}
	return cfg, reg.RegistryStr(), source, nil
}
