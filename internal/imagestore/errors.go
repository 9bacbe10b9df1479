package imagestore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/outpost-edge/outpost/internal/errdefs"
)

// ErrNotPulled is returned (wrapped) by Get for an image the store does not
// have.
var ErrNotPulled = errors.New("image not pulled")

// UnavailableError is returned when a registry cannot be reached: nothing
// listens at its address, the name does not resolve, the connection broke, or
// it answers 502/503/504. It is of kind errdefs.ErrUnavailable.
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
	return fmt.Sprintf("Check that the registry at %s is running and reachable from this device; images already pulled keep working.", e.Registry)
}

// NotFoundError is returned when the registry has no such repository or tag
// (404, MANIFEST_UNKNOWN, NAME_UNKNOWN). It is of kind errdefs.ErrNotFound.
type NotFoundError struct {
	Ref      string
	Registry string
	Err      error
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("image %s not found in registry %s", e.Ref, e.Registry)
}
func (e *NotFoundError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, errdefs.ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == errdefs.ErrNotFound }

// Hint says what to check.
func (e *NotFoundError) Hint() string {
	return "Check the image name and tag in the deployment, and that the image was pushed to this registry."
}

// PlatformError is returned when an image has nothing for the store's
// platform. Have lists what it has.
type PlatformError struct {
	Ref  string
	Want v1.Platform
	Have []v1.Platform
	// Index is true when Have comes from an image index, false when the
	// image is a single-platform image whose config names Have[0].
	Index bool
}

func (e *PlatformError) Error() string {
	if !e.Index && len(e.Have) == 1 {
		return fmt.Sprintf("image %s is built for %s, not for this device's %s", e.Ref, platformString(e.Have[0]), platformString(e.Want))
	}
	have := make([]string, len(e.Have))
	for i, p := range e.Have {
		have[i] = platformString(p)
	}
	list := strings.Join(have, ", ")
	if list == "" {
		list = "none"
	}
	return fmt.Sprintf("image %s has no image for %s; the index has: %s", e.Ref, platformString(e.Want), list)
}

// Hint says what to do.
func (e *PlatformError) Hint() string {
	return fmt.Sprintf("Build the module for %s too (platforms in module.yaml), push it, and deploy again.", platformString(e.Want))
}

// AuthError is returned when a registry refuses access. Source says which
// credentials were sent, and where they came from.
type AuthError struct {
	Ref      string
	Registry string
	Status   int // 401 or 403
	Source   string
	Err      error
}

func (e *AuthError) Error() string {
	verb := "refused"
	if e.Status == http.StatusForbidden {
		verb = "denied"
	}
	return fmt.Sprintf("registry %s %s access to %s (HTTP %d); credentials used: %s", e.Registry, verb, e.Ref, e.Status, e.Source)
}
func (e *AuthError) Unwrap() error { return e.Err }

// Hint says what to do next.
func (e *AuthError) Hint() string {
	return fmt.Sprintf("Add credentials for %s to the deployment's registryCredentials (address, username, password) or to the device's docker config (docker login %s).", e.Registry, e.Registry)
}

// PlainHTTPError is returned when a registry (or its token service) would be
// spoken to in plain HTTP and that is not allowed: only loopback hosts and
// those WithInsecure allows.
type PlainHTTPError struct {
	Host string
}

func (e *PlainHTTPError) Error() string {
	return fmt.Sprintf("refusing plain HTTP to %s: only loopback registries, or those configured as insecure, are spoken to without TLS", e.Host)
}

// DigestError is returned when content does not match the digest that names
// it. Nothing is kept from it.
type DigestError struct {
	Ref  string
	What string // "manifest", "config", "layer 2 blob", "layer 2 diffID"
	Want v1.Hash
	Got  v1.Hash
	Size string // set when the size is what differs
	Err  error  // a read error that go-containerregistry's own check reported, if any
}

func (e *DigestError) Error() string {
	if e.Size != "" {
		return fmt.Sprintf("image %s: %s %s: %s", e.Ref, e.What, e.Want, e.Size)
	}
	if e.Got == (v1.Hash{}) && e.Err != nil {
		return fmt.Sprintf("image %s: %s %s does not verify: %v", e.Ref, e.What, e.Want, e.Err)
	}
	return fmt.Sprintf("image %s: %s digest mismatch: want %s, got %s", e.Ref, e.What, e.Want, e.Got)
}
func (e *DigestError) Unwrap() error { return e.Err }

// UnsafeEntryError is returned when a layer has an entry that would write
// outside the rootfs or that the store does not allow (device nodes). The
// rootfs being unpacked is removed.
type UnsafeEntryError struct {
	Ref    string
	Layer  string // digest of the layer's blob
	Entry  string // the tar entry's name, as it is in the layer
	Reason string
}

func (e *UnsafeEntryError) Error() string {
	return fmt.Sprintf("image %s: layer %s: entry %q refused: %s", e.Ref, e.Layer, e.Entry, e.Reason)
}

// classify turns what go-containerregistry returns into the errors above where
// it can tell. ref and host are for the messages; source describes the
// credentials that were sent.
func classify(err error, ref, host, source string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var (
		plain *PlainHTTPError
		de    *DigestError
		terr  *transport.Error
	)
	switch {
	case errors.As(err, &plain), errors.As(err, &de):
		return err
	case errors.As(err, &terr):
		switch {
		case terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden || hasCode(terr, transport.UnauthorizedErrorCode, transport.DeniedErrorCode):
			status := terr.StatusCode
			if status != http.StatusForbidden {
				status = http.StatusUnauthorized
			}
			return &AuthError{Ref: ref, Registry: host, Status: status, Source: source, Err: terr}
		case terr.StatusCode == http.StatusNotFound || hasCode(terr, transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode):
			return &NotFoundError{Ref: ref, Registry: host, Err: terr}
		case terr.StatusCode == http.StatusBadGateway || terr.StatusCode == http.StatusServiceUnavailable || terr.StatusCode == http.StatusGatewayTimeout:
			return &UnavailableError{Registry: host, Err: terr}
		}
	}
	var uerr x509.UnknownAuthorityError
	var verr *tls.CertificateVerificationError
	if errors.As(err, &uerr) || errors.As(err, &verr) {
		return fmt.Errorf("registry %s: its TLS certificate is not trusted on this device (add its CA to the system trust store): %w", host, err)
	}
	if unreachable(err) {
		return &UnavailableError{Registry: host, Err: rootCause(err)}
	}
	return err
}

func hasCode(e *transport.Error, codes ...transport.ErrorCode) bool {
	for _, d := range e.Errors {
		for _, c := range codes {
			if d.Code == c {
				return true
			}
		}
	}
	return false
}

// unreachable reports whether err means the registry could not be reached or
// the connection to it broke.
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
		errors.Is(err, net.ErrClosed):
		return true
	case errors.As(err, &nerr) && nerr.Timeout():
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// rootCause returns the telling part of a network error ("dial tcp
// 127.0.0.1:5000: connect: connection refused") rather than the URL wrapper.
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
