// Package errdefs names the kinds of failure outpost's libraries report, so
// that a caller can tell them apart with errors.Is whatever library the
// error comes from. A library's typed errors match a kind through an Is
// method; they do not choose exit codes. ExitCode is the one table of a
// kind's exit code, for both binaries that exit with one: outpost
// (internal/cli's exit.go, which also gives each kind a generic next step)
// and outpost-daemon (internal/daemon's Exit), which does not link the CLI.
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

// Exit codes, as DESIGN "CLI surface" fixes them.
const (
	ExitOK           = 0
	ExitFailure      = 1
	ExitUsage        = 2
	ExitNotFound     = 3
	ExitPrecondition = 4
	ExitUnavailable  = 5
)

// ExitCode is the exit code of an error by its kind: 0 for nil, 3 not found,
// 4 precondition failed, 5 unavailable, and 1 for any other error (a conflict
// and refused credentials included: 4 is kept for an etag that is no longer
// current, which a script may want to retry after reading again).
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrNotFound):
		return ExitNotFound
	case errors.Is(err, ErrPrecondition):
		return ExitPrecondition
	case errors.Is(err, ErrUnavailable):
		return ExitUnavailable
	}
	return ExitFailure
}
