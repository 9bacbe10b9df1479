package image

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/outpost-edge/outpost/internal/errdefs"
)

// UnavailableError is returned when a registry cannot be reached: nothing
// listens at its address, the name does not resolve, or the connection
// broke and could not be made again. It is of kind errdefs.ErrUnavailable.
type UnavailableError struct {
	Registry string // host[:port]
	Err      error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("registry %s is unreachable: %v", e.Registry, e.Err)
}
func (e *UnavailableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, errdefs.ErrUnavailable) true.
func (e *UnavailableError) Is(target error) bool { return target == errdefs.ErrUnavailable }

// Hint says what to check.
func (e *UnavailableError) Hint() string {
	return fmt.Sprintf("Check that a registry is running at %s and that the address (the image reference's host) is right.", e.Registry)
}

// AuthError is returned when a registry refuses the credentials (or their
// absence). Source says where they came from.
type AuthError struct {
	Registry   string
	Repository string
	Status     int // 401 or 403
	Source     CredentialSource
	Err        error
	// Pull is set when the registry refused reading (resolving a tag),
	// not pushing.
	Pull bool
}

func (e *AuthError) Error() string {
	switch {
	case e.Source.Anonymous() && e.Status == http.StatusUnauthorized:
		return fmt.Sprintf("registry %s requires credentials and none were found (%s): %v", e.Registry, e.Source, e.Err)
	case e.Status == http.StatusForbidden && e.Pull:
		return fmt.Sprintf("registry %s denied reading %s with credentials from %s: %v", e.Registry, e.Repository, e.Source, e.Err)
	case e.Status == http.StatusForbidden:
		return fmt.Sprintf("registry %s denied pushing to %s with credentials from %s: %v", e.Registry, e.Repository, e.Source, e.Err)
	}
	return fmt.Sprintf("registry %s rejected the credentials from %s: %v", e.Registry, e.Source, e.Err)
}
func (e *AuthError) Unwrap() error { return e.Err }

// Hint says what to do next.
func (e *AuthError) Hint() string {
	login := "docker login " + e.Registry
	if e.Registry == name.DefaultRegistry {
		login = "docker login"
	}
	switch {
	case e.Source.Anonymous() && e.Status == http.StatusUnauthorized:
		return fmt.Sprintf("Log in first: %s (outpost reads docker's config.json and credential helpers).", login)
	case e.Status == http.StatusForbidden && e.Pull:
		return fmt.Sprintf("Check that this account may pull from %s, or log in as another: %s", e.Repository, login)
	case e.Status == http.StatusForbidden:
		return fmt.Sprintf("Check that this account may push to %s, or log in as another: %s", e.Repository, login)
	}
	return fmt.Sprintf("Check the user name and password, then log in again: %s", login)
}

// PlainHTTPError is returned when a registry would be spoken to over plain
// HTTP and that is not allowed: outpost uses plain HTTP only for loopback
// registries, or for others with --insecure (PushOptions.Insecure).
type PlainHTTPError struct {
	Registry string
}

func (e *PlainHTTPError) Error() string {
	return fmt.Sprintf("registry %s speaks plain HTTP, which outpost uses only for loopback registries unless told otherwise", e.Registry)
}

// Hint says how to allow it.
func (e *PlainHTTPError) Hint() string {
	return fmt.Sprintf("If you trust the network between here and %s, pass --insecure.", e.Registry)
}

// hintedError adds a hint to an error without changing its message.
type hintedError struct {
	err  error
	hint string
}

func (e *hintedError) Error() string { return e.err.Error() }
func (e *hintedError) Unwrap() error { return e.err }
func (e *hintedError) Hint() string  { return e.hint }

// classifyPushError turns what go-containerregistry returns into one of
// the errors above where it can tell.
func classifyPushError(err error, repo name.Repository, kc authn.Keychain) error {
	host := repo.RegistryStr()
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var plain *PlainHTTPError
	if errors.As(err, &plain) {
		return plain
	}
	var terr *transport.Error
	if errors.As(err, &terr) && isAuthFailure(terr) {
		status := terr.StatusCode
		if status != http.StatusForbidden {
			status = http.StatusUnauthorized
		}
		return &AuthError{Registry: host, Repository: repo.RepositoryStr(), Status: status, Source: DescribeCredentials(repo, kc), Err: terr}
	}
	if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return &PlainHTTPError{Registry: host}
	}
	var uerr x509.UnknownAuthorityError
	var verr *tls.CertificateVerificationError
	if errors.As(err, &uerr) || errors.As(err, &verr) {
		return &hintedError{err: err, hint: fmt.Sprintf("The certificate of %s is not trusted here: add its CA to the system's trust store (or point SSL_CERT_FILE at a bundle that has it).", host)}
	}
	if unreachable(err) {
		return &UnavailableError{Registry: host, Err: rootCause(err)}
	}
	return err
}

func isAuthFailure(e *transport.Error) bool {
	if e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden {
		return true
	}
	for _, d := range e.Errors {
		if d.Code == transport.UnauthorizedErrorCode || d.Code == transport.DeniedErrorCode {
			return true
		}
	}
	return false
}

// unreachable reports whether err means the registry could not be reached
// or the connection to it broke.
func unreachable(err error) bool {
	var dns *net.DNSError
	var nerr net.Error
	switch {
	case errors.As(err, &dns):
		return true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return true
	case errors.As(err, &nerr) && nerr.Timeout():
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// rootCause returns the most telling part of a network error: the
// *net.OpError ("dial tcp 127.0.0.1:5000: connect: connection refused")
// rather than the URL wrapper around it.
func rootCause(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return op
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns
	}
	return err
}

// CredentialSource says where the credentials for a registry come from.
type CredentialSource struct {
	// Kind is "config" (an auths entry of File), "helper" (credential
	// helper Helper named in File's credHelpers), "store" (File's
	// credsStore Helper), "anonymous" (none; File is where outpost looked,
	// if anywhere) or "keychain" (a keychain other than docker's).
	Kind   string
	File   string
	Helper string
}

// Anonymous reports whether no credentials were found.
func (s CredentialSource) Anonymous() bool { return s.Kind == "anonymous" }

func (s CredentialSource) String() string {
	switch s.Kind {
	case "config":
		return "docker config file " + s.File
	case "helper":
		return fmt.Sprintf("credential helper docker-credential-%s (credHelpers in %s)", s.Helper, s.File)
	case "store":
		return fmt.Sprintf("credential store docker-credential-%s (credsStore in %s)", s.Helper, s.File)
	case "keychain":
		return "the keychain outpost was given"
	}
	if s.File != "" {
		return "anonymous: no entry for the registry in " + s.File
	}
	return "anonymous: no docker config file (~/.docker/config.json or $DOCKER_CONFIG/config.json)"
}

// DescribeCredentials says where kc finds credentials for repo's registry.
// For authn.DefaultKeychain it follows the same steps: docker's config
// file ($DOCKER_CONFIG/config.json, else ~/.docker/config.json), else
// $REGISTRY_AUTH_FILE, else podman's containers/auth.json.
func DescribeCredentials(repo name.Repository, kc authn.Keychain) CredentialSource {
	if kc != nil && kc != authn.Keychain(authn.DefaultKeychain) {
		return CredentialSource{Kind: "keychain"}
	}
	file := dockerConfigFile()
	if file == "" {
		return CredentialSource{Kind: "anonymous"}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return CredentialSource{Kind: "anonymous", File: file}
	}
	var cf struct {
		Auths       map[string]json.RawMessage `json:"auths"`
		CredHelpers map[string]string          `json:"credHelpers"`
		CredsStore  string                     `json:"credsStore"`
	}
	if json.Unmarshal(b, &cf) != nil {
		return CredentialSource{Kind: "anonymous", File: file}
	}
	host := repo.RegistryStr()
	if host == name.DefaultRegistry {
		host = authn.DefaultAuthKey
	}
	if h := cf.CredHelpers[host]; h != "" {
		return CredentialSource{Kind: "helper", File: file, Helper: h}
	}
	if cf.CredsStore != "" {
		return CredentialSource{Kind: "store", File: file, Helper: cf.CredsStore}
	}
	for k := range cf.Auths {
		if k == repo.String() || k == host || hostOf(k) == hostOf(host) {
			return CredentialSource{Kind: "config", File: file}
		}
	}
	return CredentialSource{Kind: "anonymous", File: file}
}

// dockerConfigFile returns the file authn.DefaultKeychain reads, or "".
func dockerConfigFile() string {
	exists := func(p string) bool { fi, err := os.Stat(p); return err == nil && !fi.IsDir() }
	home, _ := os.UserHomeDir()
	dir := os.Getenv("DOCKER_CONFIG")
	if (home != "" && exists(filepath.Join(home, ".docker", "config.json"))) ||
		(dir != "" && exists(filepath.Join(dir, "config.json"))) {
		if dir == "" {
			dir = filepath.Join(home, ".docker")
		}
		return filepath.Join(dir, "config.json")
	}
	if p := os.Getenv("REGISTRY_AUTH_FILE"); p != "" && exists(p) {
		return filepath.Clean(p)
	}
	if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" && exists(filepath.Join(rt, "containers", "auth.json")) {
		return filepath.Join(rt, "containers", "auth.json")
	}
	cfg := os.Getenv("XDG_CONFIG_HOME")
	if cfg == "" && home != "" {
		cfg = filepath.Join(home, ".config")
	}
	if cfg != "" && exists(filepath.Join(cfg, "containers", "auth.json")) {
		return filepath.Join(cfg, "containers", "auth.json")
	}
	return ""
}

// hostOf strips a scheme and a path from a docker config auths key, as
// docker does when it matches keys to registries.
func hostOf(k string) string {
	k = strings.TrimPrefix(strings.TrimPrefix(k, "https://"), "http://")
	h, _, _ := strings.Cut(k, "/")
	return h
}
