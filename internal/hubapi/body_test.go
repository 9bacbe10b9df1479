package hubapi_test

import (
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/outpost-edge/outpost/internal/hubapi"
)

// TestReadBody: the body read into a buffer sized by its announced length
// is the whole body whatever the announced length says, and read errors
// come through.
func TestReadBody(t *testing.T) {
	body := strings.Repeat(`{"a":"xyz"}`, 100)
	for _, n := range []int64{-1, 0, 1, 10, int64(len(body)) - 1, int64(len(body)), int64(len(body)) + 1, 1 << 40} {
		got, err := hubapi.ReadBody(iotest.OneByteReader(strings.NewReader(body)), n, 1<<20)
		if err != nil || string(got) != body {
			t.Errorf("announced %d: %d bytes, %v", n, len(got), err)
		}
	}
	if _, err := hubapi.ReadBody(iotest.ErrReader(io.ErrUnexpectedEOF), 10, 1<<20); err != io.ErrUnexpectedEOF {
		t.Errorf("a read error: %v", err)
	}
}
