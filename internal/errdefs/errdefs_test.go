package errdefs

import (
	"errors"
	"fmt"
	"testing"
)

func TestFromHTTPStatus(t *testing.T) {
	for status, want := range map[int]error{
		200: nil, 400: nil, 401: ErrUnauthorized, 403: nil, 404: ErrNotFound, 409: ErrConflict,
		412: ErrPrecondition, 500: nil, 502: ErrUnavailable, 503: ErrUnavailable, 504: ErrUnavailable,
	} {
		if got := FromHTTPStatus(status); got != want {
			t.Errorf("FromHTTPStatus(%d) = %v, want %v", status, got, want)
		}
	}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{ErrNotFound, ExitNotFound},
		{ErrPrecondition, ExitPrecondition},
		{ErrUnavailable, ExitUnavailable},
		{ErrConflict, ExitFailure},
		{ErrUnauthorized, ExitFailure},
		{fmt.Errorf("get d: %w", ErrNotFound), ExitNotFound},
		{errors.New("other"), ExitFailure},
	} {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
