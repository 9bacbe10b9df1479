package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
)

func TestHubPolicyRotateArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want hubPolicyRotateOptions
		err  string
	}{
		{[]string{"owner"}, hubPolicyRotateOptions{Policy: "owner"}, ""},
		{[]string{"owner", "--keep-previous"}, hubPolicyRotateOptions{Policy: "owner", KeepPrevious: true}, ""},
		{[]string{}, hubPolicyRotateOptions{}, "takes one policy NAME (got 0 arguments)"},
	} {
		var got *hubPolicyRotateOptions
		ios, _, _, _ := TestIO()
		err := parseCmd(newHubPolicyRotateCmd(&Factory{IO: ios}, func(o *hubPolicyRotateOptions) error { got = o; return nil }), tc.args...)
		if checkParseErr(t, tc.args, err, tc.err) && *got != tc.want {
			t.Errorf("%q: options %+v, want %+v", tc.args, *got, tc.want)
		}
	}
}

func TestHubPolicyRotate(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	old := h.ConnectionString
	code, out, errOut := run(t, "hub", "policy", "rotate", "owner")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	cs := strings.TrimSpace(out)
	if !strings.HasPrefix(cs, "HostName="+h.HostName()+";SharedAccessKeyName=owner;SharedAccessKey=") || cs == old {
		t.Fatalf("stdout %q, want the new owner connection string", out)
	}
	if !strings.Contains(errOut, "rotated policy owner: both keys are new") {
		t.Errorf("stderr: %s", errOut)
	}
	// The old connection string is refused; the printed one works.
	if code, _, errOut := run(t, "device", "list"); code != 1 || !strings.Contains(errOut, "bad signature for policy owner") {
		t.Fatalf("device list with the old connection string: exit %d, %s", code, errOut)
	}
	t.Setenv("OUTPOST_CONNECTION_STRING", cs)
	if code, _, errOut := run(t, "device", "list"); code != 0 {
		t.Fatalf("device list with the new connection string: exit %d, %s", code, errOut)
	}
	// -o json prints both keys; --keep-previous keeps the old primary.
	code, out, errOut = run(t, "hub", "policy", "rotate", "owner", "--keep-previous", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var p hubapi.Policy
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("-o json: %v: %s", err, out)
	}
	if !strings.HasSuffix(cs, "SharedAccessKey="+p.SecondaryKey) || p.ConnectionString == cs {
		t.Fatalf("--keep-previous: %+v", p)
	}
	if code, _, errOut := run(t, "device", "list"); code != 0 {
		t.Fatalf("the previous connection string during a rollover: exit %d, %s", code, errOut)
	}
	// An unknown policy: not found, exit 3.
	if code, _, errOut := run(t, "hub", "policy", "rotate", "nobody"); code != 3 || !strings.Contains(errOut, `no shared access policy "nobody"`) {
		t.Fatalf("unknown policy: exit %d, %s", code, errOut)
	}
}
