package errdefs

import "testing"

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
