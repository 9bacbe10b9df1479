package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/outpost-edge/outpost/internal/errdefs"
)

// Exit codes, as DESIGN "CLI surface" fixes them.
const (
	ExitOK           = errdefs.ExitOK
	ExitFailure      = errdefs.ExitFailure
	ExitUsage        = errdefs.ExitUsage
	ExitNotFound     = errdefs.ExitNotFound
	ExitPrecondition = errdefs.ExitPrecondition
	ExitUnavailable  = errdefs.ExitUnavailable
)

// exitCodesHelp is the table of exit codes in `outpost --help` and the
// reference.
const exitCodesHelp = `Exit codes:

    0  success
    1  failure, including a conflict (what you create already exists)
    2  usage error: a bad command, flag or argument
    3  not found: the device, module, twin, image or endpoint does not exist
    4  precondition failed: the etag given (--if-match, twin edit) is no longer current
    5  unavailable: the hub, the daemon or a registry does not answer`

// FlagError is a usage error: bad flags or arguments. It exits 2 and points
// at the command's help.
type FlagError struct{ Err error }

func (e *FlagError) Error() string { return e.Err.Error() }
func (e *FlagError) Unwrap() error { return e.Err }

// flagErrorf returns a usage error.
func flagErrorf(format string, a ...any) error {
	return &FlagError{Err: fmt.Errorf(format, a...)}
}

// ExitError carries an exit code and a hint (what to do next) with an error.
type ExitError struct {
	Code int
	Err  error
	Hint string
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// SilentError exits with Code without printing anything: the command has
// already said what happened.
type SilentError struct{ Code int }

func (e *SilentError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// hinter is implemented by errors that know what the user should do next.
type hinter interface{ Hint() string }

// kindHints are what to do next after an error of a kind (errdefs) when the
// error itself does not say. The kinds' exit codes are errdefs.ExitCode's.
var kindHints = []struct {
	kind error
	hint string
}{
	{errdefs.ErrPrecondition, "someone changed it since you read it: read it again and retry"},
	{errdefs.ErrUnavailable, "it may be restarting: try again in a moment"},
	{errdefs.ErrConflict, "it already exists, or changed meanwhile: look at it (show/get) and retry"},
	{errdefs.ErrUnauthorized, "check the credentials: the key or the policy may be wrong"},
}

// exitCode maps an error to the process exit code: the CLI's own errors
// here, the libraries' by their kind (errdefs.ExitCode, which outpost-daemon
// uses too).
func exitCode(err error) int {
	var (
		silent *SilentError
		ee     *ExitError
		fe     *FlagError
	)
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &silent):
		return silent.Code
	case errors.As(err, &ee):
		return ee.Code
	case errors.As(err, &fe), isCobraUsageError(err):
		return ExitUsage
	}
	return errdefs.ExitCode(err)
}

// hintFor returns what to tell the user to do next, if anything: the
// error's own hint, else the generic one of its kind.
func hintFor(err error) string {
	if h := ownHint(err); h != "" {
		return h
	}
	for _, k := range kindHints {
		if errors.Is(err, k.kind) {
			return k.hint
		}
	}
	return ""
}

// ownHint returns the hint err carries itself (an ExitError's or a library
// error's), if any.
func ownHint(err error) string {
	var ee *ExitError
	if errors.As(err, &ee) && ee.Hint != "" {
		return ee.Hint
	}
	var h hinter
	if errors.As(err, &h) {
		return h.Hint()
	}
	return ""
}

// isCobraUsageError recognises the usage errors cobra makes itself (unknown
// commands and the like), which do not go through the flag error func.
func isCobraUsageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "invalid argument", "accepts ", "requires at least", "requires at most", "flag needs an argument"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
