// Package errdefs names the kinds of failure outpost's libraries report, so
// that a caller can tell them apart with errors.Is whatever library the
// error comes from. A library's typed errors match a kind through an Is
// method; they do not choose exit codes: the CLI maps kinds to exit codes
// and generic next steps in one place (internal/cli's exit.go).
package errdefs

import (
	"errors"
	"net/http"
)

// The kinds of failure.
var (
	// ErrNotFound: the thing named does not exist (HTTP 404).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the thing to create already exists, or the request
	// conflicts with the current state (HTTP 409). Not an etag mismatch.
	ErrConflict = errors.New("conflict")
	// ErrPrecondition: a condition of the request does not hold, such as an
	// If-Match etag that is no longer current (HTTP 412).
	ErrPrecondition = errors.New("precondition failed")
	// ErrUnauthorized: the credentials were refused (HTTP 401).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnavailable: the service (hub, daemon, registry) could not be
	// reached or said it cannot answer now (HTTP 503).
	ErrUnavailable = errors.New("unavailable")
)

// FromHTTPStatus returns the kind of an HTTP error status, or nil when the
// status is of no particular kind.
func FromHTTPStatus(status int) error {
	switch status {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrConflict
	case http.StatusPreconditionFailed:
		return ErrPrecondition
	case http.StatusUnauthorized:
		return ErrUnauthorized
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return ErrUnavailable
	}
	return nil
}
