package cli

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/outpost-edge/outpost/internal/daemon"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/mgmt"
)

// TestDaemonBinaryExitCodes: outpost-daemon, which `outpost daemon` execs and which
// does not link the CLI, exits with the code and hint the CLI gives the same error
// when it runs the daemon in its own process (issue 9, item 29: one table of exit
// codes, whichever binary exits).
func TestDaemonBinaryExitCodes(t *testing.T) {
	_, configErr := daemon.New(daemon.Config{ConnectionString: "HostName=h;SharedAccessKeyName=owner;SharedAccessKey=YWJj", DataDir: t.TempDir()})
	if !errors.Is(configErr, daemon.ErrConfig) {
		t.Fatalf("daemon.New with an owner's connection string: %v, want a configuration error", configErr)
	}
	for _, err := range []error{
		configErr,
		fmt.Errorf("daemon: management API: %w", mgmt.ErrInUse),
		fmt.Errorf("daemon: sync: %w", &hubclient.UnavailableError{Addr: "hub:443", Err: syscall.ECONNREFUSED}),
		fmt.Errorf("daemon: sync: %w", &hubclient.Error{StatusCode: 401, Message: "bad signature"}),
		fmt.Errorf("daemon: sync: %w", &hubclient.Error{StatusCode: 404, Message: "no device d"}),
		errors.New("daemon: agent: stopped by itself"),
	} {
		var out bytes.Buffer
		got := daemon.Exit(&out, err)
		want := exitCode(err)
		if errors.Is(err, daemon.ErrConfig) {
			want = ExitUsage // as internal/cli/daemon.go returns it
		}
		if got != want {
			t.Errorf("%v: outpost-daemon exits %d, outpost %d", err, got, want)
		}
		if !strings.Contains(out.String(), err.Error()) {
			t.Errorf("%v: outpost-daemon printed %q", err, out.String())
		}
		if h := ownHint(err); h != "" && !strings.Contains(out.String(), h) {
			t.Errorf("%v: outpost-daemon printed %q, without the error's hint %q", err, out.String(), h)
		}
	}
}
