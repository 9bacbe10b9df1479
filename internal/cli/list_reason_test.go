package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"charm.land/lipgloss/v2"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
)

// TestListReason: a module that failed, and one in back-off because its
// image cannot be pulled, say why in outpost list's REASON column, cut to the
// terminal's width; -o json has the whole description.
func TestListReason(t *testing.T) {
	f := agenttest.New(t, "process")
	f.Deploy(t, map[string]any{
		"fail":   map[string]any{"image": f.Image, "restartPolicy": "never", "createOptions": map[string]any{"Cmd": []string{"exit", "3"}}},
		"nopull": map[string]any{"image": f.Registry + "/nosuch:1"},
		"web":    map[string]any{"image": f.Image},
	})
	sock := startDaemon(t, f)

	var mods []mgmtclient.Module
	agenttest.Eventually(t, 30*time.Second, "fail failed and nopull in backoff", func() bool {
		code, out, _ := run(t, "list", "--mgmt-socket", sock, "-o", "json")
		mods = nil
		if code != 0 || json.Unmarshal([]byte(out), &mods) != nil || len(mods) != 3 {
			return false
		}
		return mods[0].Status == "failed" && mods[1].Status == "backoff" && mods[1].Description != "" && mods[2].Status == "running"
	})
	pullErr := strings.Join(strings.Fields(mods[1].Description), " ")

	// In a pipe nothing is cut.
	code, out, _ := run(t, "list", "--mgmt-socket", sock)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || !strings.HasSuffix(lines[0], "REASON") {
		t.Fatalf("list: %d\n%s", code, out)
	}
	if !strings.HasSuffix(lines[1], strings.Join(strings.Fields(mods[0].Description), " ")) || !strings.Contains(lines[1], "exited with code 3") || !strings.HasSuffix(lines[2], pullErr) || !strings.HasSuffix(lines[3], " -") {
		t.Errorf("list: the reasons are not there whole:\n%s", out)
	}

	// On a terminal of 130 columns every line fits, the long reason cut.
	ios, _, outBuf, errBuf := TestIO()
	ios.SetTerminal(true, false)
	ios.SetWidth(130)
	if code := Run(context.Background(), ios, []string{"list", "--mgmt-socket", sock}); code != 0 {
		t.Fatalf("list on a terminal: %d %s", code, errBuf)
	}
	lines = strings.Split(strings.TrimSpace(outBuf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("list on a terminal:\n%s", outBuf)
	}
	for _, l := range lines {
		if lipgloss.Width(l) > 130 {
			t.Errorf("line wider than the terminal (%d): %q", lipgloss.Width(l), l)
		}
	}
	if !strings.Contains(lines[1], "exited with code 3") {
		t.Errorf("the reason is not there: %q", lines[1])
	}
	if len(pullErr) > 40 && !strings.HasSuffix(lines[2], "…") {
		t.Errorf("the pull error was not cut with …: %q", lines[2])
	}
	if !strings.Contains(lines[2], pullErr[:5]) {
		t.Errorf("the pull error is not in the line: %q (want %q…)", lines[2], pullErr[:5])
	}
}
