package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Exit codes, as DESIGN "CLI surface" fixes them.
const (
	ExitOK           = 0
	ExitFailure      = 1
	ExitUsage        = 2
	ExitNotFound     = 3
	ExitPrecondition = 4
	ExitUnavailable  = 5
)

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

// exitCoder is implemented by errors of other packages (the hub client, the
// management client) that know which exit code fits them.
type exitCoder interface{ ExitCode() int }

// hinter is implemented by errors that know what the user should do next.
type hinter interface{ Hint() string }

// exitCode maps an error to the process exit code. It is the only place
// that does.
func exitCode(err error) int {
	var (
		silent *SilentError
		ee     *ExitError
		fe     *FlagError
		ec     exitCoder
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
	case errors.As(err, &ec):
		return ec.ExitCode()
	case errors.Is(err, context.Canceled):
		return ExitFailure
	}
	return ExitFailure
}

// hintFor returns what to tell the user to do next, if anything.
func hintFor(err error) string {
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
