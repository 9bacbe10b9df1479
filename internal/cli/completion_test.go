package cli

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
)

// complete runs `outpost __complete args…` (what the shell scripts of
// outpost completion run on TAB) and returns the completions and the
// directive line.
func complete(t *testing.T, args ...string) (choices []string, directive string) {
	t.Helper()
	code, out, errOut := run(t, append([]string{"__complete"}, args...)...)
	if code != 0 {
		t.Fatalf("__complete %q: %d %s", args, code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines[:len(lines)-1] {
		c, _, _ := strings.Cut(l, "\t")
		choices = append(choices, c)
	}
	return choices, lines[len(lines)-1]
}

func wantChoices(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s: completions %q, want %q", what, got, want)
	}
}

// TestDynamicCompletion: device ids and DEVICE/MODULE names come from a real hub,
// module names from a real daemon, flag values from outpost; with the hub or
// the daemon unreachable, nothing is offered and nothing is printed on stderr.
func TestDynamicCompletion(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", "")
	f := agenttest.New(t, "process")
	mustCreateDevice(t, f.Hub, "dev-2")
	mustCreateModule(t, f.Hub, "dev-2", "pump")
	f.Deploy(t, map[string]any{"web": map[string]any{"image": f.Image}, "sensor": map[string]any{"image": f.Image}})
	sock := startDaemon(t, f)
	agenttest.Eventually(t, 30*time.Second, "the deployment at the daemon", func() bool {
		_, out, _ := run(t, "list", "--mgmt-socket", sock)
		return strings.Contains(out, "web") && strings.Contains(out, "sensor")
	})
	hub := []string{"--hub", f.Hub.ConnectionString, "--ca", f.Hub.CAFile}

	got, dir := complete(t, append(hub, "device", "show", "")...)
	wantChoices(t, "device show", got, "dev", "dev-2")
	if dir != ":4" { // no file completion
		t.Errorf("device show: directive %s", dir)
	}
	got, _ = complete(t, append(hub, "device", "show", "dev-")...)
	wantChoices(t, "device show dev-", got, "dev-2")
	got, _ = complete(t, append(hub, "device", "show", "dev", "")...)
	wantChoices(t, "device show's second argument", got)

	got, dir = complete(t, append(hub, "twin", "watch", "")...)
	wantChoices(t, "twin watch", got, "dev/", "dev-2/")
	if dir != ":6" { // no space after the slash, no file completion
		t.Errorf("twin watch: directive %s", dir)
	}
	got, _ = complete(t, append(hub, "twin", "watch", "dev-2/")...)
	wantChoices(t, "twin watch dev-2/", got, "dev-2/$edgeAgent", "dev-2/$edgeHub", "dev-2/pump")
	got, _ = complete(t, append(hub, "module", "show", "dev-2/p")...)
	wantChoices(t, "module show dev-2/p", got, "dev-2/pump")
	got, _ = complete(t, append(hub, "deploy", "d")...)
	wantChoices(t, "deploy", got, "dev", "dev-2")

	// The hub from the environment, as users set it.
	t.Setenv("OUTPOST_CONNECTION_STRING", f.Hub.ConnectionString)
	t.Setenv("OUTPOST_CA", f.Hub.CAFile)
	got, _ = complete(t, "token", "dev-")
	wantChoices(t, "token from env", got, "dev-2")

	got, _ = complete(t, "logs", "--mgmt-socket", sock, "")
	wantChoices(t, "logs", got, "sensor", "web")
	got, _ = complete(t, "restart", "--mgmt-socket", sock, "w")
	wantChoices(t, "restart w", got, "web")

	got, _ = complete(t, "list", "-o", "")
	wantChoices(t, "-o", got, "table", "json", "yaml")
	got, _ = complete(t, "daemon", "--runtime", "")
	wantChoices(t, "--runtime", got, "auto", "runc", "docker", "process")
	got, _ = complete(t, "build", "--platform", "linux/amd64,linux/arm")
	wantChoices(t, "--platform", got, "linux/amd64,linux/arm64", "linux/amd64,linux/arm/v7", "linux/amd64,linux/arm/v6")

	// Nothing answers: no completions, no error.
	for _, args := range [][]string{
		{"logs", "--mgmt-socket", filepath.Join(t.TempDir(), "none.sock"), ""},
		{"--hub", "HostName=127.0.0.1:1;SharedAccessKeyName=owner;SharedAccessKey=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "device", "show", ""},
	} {
		code, out, errOut := run(t, append([]string{"__complete"}, args...)...)
		// cobra's own last line on stderr, which the shell scripts drop, and
		// nothing else.
		if code != 0 || strings.TrimSpace(out) != ":4" || strings.TrimSpace(errOut) != "Completion ended with directive: ShellCompDirectiveNoFileComp" {
			t.Errorf("__complete %q with nothing answering: %d %q %q", args, code, out, errOut)
		}
	}
}
