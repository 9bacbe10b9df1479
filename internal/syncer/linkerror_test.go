package syncer

import (
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
)

// TestLinkLastError: a stopped hub gives the link a last error, signalled,
// then one naming the hub's address; it stays once the hub is back.
func TestLinkLastError(t *testing.T) {
	f := setup(t)
	s, _ := run(t, f, f.st)
	waitStatus(t, s, "connected", func() bool { return s.Link().Connected })
	if l := s.Link(); l.LastError != "" || !l.LastErrorAt.IsZero() {
		t.Fatalf("a last error before any: %+v", l)
	}
	addr := f.hub.Addr().String()
	f.hub.Stop()
	waitStatus(t, s, "a last error", func() bool { return s.Link().LastError != "" })
	l := s.Link()
	if l.Connected || l.LastErrorAt.IsZero() {
		t.Fatalf("link offline: %+v", l)
	}
	// The hub stopped for good: what the syncer sees next names it (the
	// first error may be the hub saying it is shutting down).
	waitStatus(t, s, "an error naming the hub", func() bool {
		return strings.Contains(s.Link().LastError, strings.TrimPrefix(addr, "127.0.0.1"))
	})
	l = s.Link()
	st, err := s.Status()
	if err != nil || st.LastError != l.LastError {
		t.Fatalf("Status: %+v %v, want the last error %q", st, err, l.LastError)
	}
	hubtest.Start(t, hubtest.Options{DataDir: f.hubData, Listen: addr})
	waitStatus(t, s, "the link up", func() bool { return s.Link().Connected })
	if got := s.Link(); got.LastError == "" {
		t.Fatalf("the last error after the hub came back: %+v, want it kept", got)
	}
}
