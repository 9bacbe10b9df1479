package cli

import (
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

func TestTuiNeedsATerminal(t *testing.T) {
	code, out, errOut := run(t, "tui", "--hub", "HostName=127.0.0.1;SharedAccessKeyName=owner;SharedAccessKey=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	if code != ExitUsage {
		t.Fatalf("exit code %d, want %d; stderr:\n%s", code, ExitUsage, errOut)
	}
	if out != "" {
		t.Errorf("stdout %q, want nothing (the screen must not be touched)", out)
	}
	if !strings.Contains(errOut, "needs a terminal") || !strings.Contains(errOut, "outpost twin get|watch") {
		t.Errorf("stderr does not say a terminal is needed and what to use instead:\n%s", errOut)
	}
}

func TestTuiArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"tui", "a", "b"}, ExitUsage, "at most one DEVICE or DEVICE/MODULE"},
		{[]string{"tui", "a/b/c"}, ExitUsage, "one '/'"},
		{[]string{"tui", "dev 1"}, ExitUsage, "invalid DEVICE or DEVICE/MODULE"},
	} {
		code, _, errOut := run(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}

func TestChooseTUIMode(t *testing.T) {
	const (
		owner  = "HostName=h;SharedAccessKeyName=owner;SharedAccessKey=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
		device = "HostName=h;DeviceId=d;SharedAccessKey=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	)
	yes := func() bool { return true }
	no := func() bool { return false }
	for _, tc := range []struct {
		name    string
		cs      string
		forced  bool
		answers func() bool
		want    tuiMode
		err     string
	}{
		{"socket forced wins over a hub string", owner, true, no, tuiLocal, ""},
		{"operator string opens the hub", owner, false, yes, tuiHub, ""},
		{"no string and a daemon: local", "", false, yes, tuiLocal, ""},
		{"a device's string and a daemon: local", device, false, yes, tuiLocal, ""},
		{"a device's string, no daemon: hub (HubClient explains)", device, false, no, tuiHub, ""},
		{"nothing at all", "", false, no, 0, "no hub connection string, and no daemon answers"},
	} {
		got, err := chooseTUIMode(tc.cs, tc.forced, tc.answers)
		if tc.err != "" {
			var ee *ExitError
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.As(err, &ee) || !strings.Contains(ee.Hint, "--mgmt-socket") {
				t.Errorf("%s: err %v, want one containing %q with a hint naming --mgmt-socket", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

func TestSocketAnswers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	if socketAnswers(path) {
		t.Fatal("socketAnswers is true for a socket that does not exist")
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if !socketAnswers(path) {
		t.Fatal("socketAnswers is false for a listening socket")
	}
}
