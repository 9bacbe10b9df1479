package cli

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
)

var ansiRE = regexp.MustCompile("\x1b\\[[0-9;]*m")

// ttyIO returns streams whose stdout is taken for a terminal that shows
// colour, as System returns them on one.
func ttyIO() (*IOStreams, *bytes.Buffer) {
	ios, _, out, _ := TestIO()
	ios.SetTerminal(true, false)
	ios.noColor = false
	return ios, out
}

func TestColorStatus(t *testing.T) {
	ios, _ := ttyIO()
	for cell, sgr := range map[string]string{
		"running": "32", "Connected": "32", "enabled": "32",
		"failed (exit 3)": "31", "unhealthy": "31", "disabled": "31",
		"backoff": "33", "stopped": "33", "Disconnected": "33",
	} {
		got := ios.ColorStatus(cell)
		if !strings.HasPrefix(got, "\x1b["+sgr+"m") || ansiRE.ReplaceAllString(got, "") != cell {
			t.Errorf("ColorStatus(%q) = %q, want it in colour %s", cell, got, sgr)
		}
	}
	for _, cell := range []string{"unknown", "-", "web", ""} {
		if got := ios.ColorStatus(cell); got != cell {
			t.Errorf("ColorStatus(%q) = %q, want it as it is", cell, got)
		}
	}
	// No colour in a pipe, with --no-color, or with NO_COLOR set.
	pipe, _, _, _ := TestIO()
	pipe.noColor = false
	noColor, _ := ttyIO()
	noColor.SetNoColor()
	t.Setenv("NO_COLOR", "1")
	for name, s := range map[string]*IOStreams{"pipe": pipe, "--no-color": noColor, "NO_COLOR": System()} {
		if got := s.ColorStatus("running"); got != "running" {
			t.Errorf("%s: ColorStatus(running) = %q, want no colour", name, got)
		}
	}
}

// TestTableAlignsColouredCells checks that escape sequences do not count
// in a column's width.
func TestTableAlignsColouredCells(t *testing.T) {
	ios, _ := ttyIO()
	plain, coloured := NewTable("name", "status", "image"), NewTable("name", "status", "image")
	for _, r := range [][]string{{"web", "running", "r/web:1"}, {"filter", "failed (exit 3)", "r/filter:1"}, {"x", "unknown", "r/x:1"}} {
		plain.Row(r...)
		coloured.Row(r[0], ios.ColorStatus(r[1]), r[2])
	}
	var p, c strings.Builder
	if err := plain.Write(&p); err != nil {
		t.Fatal(err)
	}
	if err := coloured.Write(&c); err != nil {
		t.Fatal(err)
	}
	want := "NAME     STATUS            IMAGE\n" +
		"web      running           r/web:1\n" +
		"filter   failed (exit 3)   r/filter:1\n" +
		"x        unknown           r/x:1\n"
	if p.String() != want {
		t.Errorf("plain table:\n%s\nwant:\n%s", p.String(), want)
	}
	if !ansiRE.MatchString(c.String()) || ansiRE.ReplaceAllString(c.String(), "") != want {
		t.Errorf("coloured table, without its colours:\n%q\nwant:\n%q", c.String(), want)
	}
}

// TestDeviceListColours runs device list on a terminal against a real hub:
// status words are coloured, unless --no-color says not to.
func TestDeviceListColours(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	mustCreateDevice(t, h, "d1")
	ios, out := ttyIO()
	if code := Run(context.Background(), ios, []string{"device", "list"}); code != 0 {
		t.Fatalf("device list: code %d", code)
	}
	if !strings.Contains(out.String(), "\x1b[32menabled") || !strings.Contains(out.String(), "\x1b[33mDisconnected") {
		t.Errorf("device list on a terminal: %q, want enabled in green and Disconnected in yellow", out.String())
	}
	ios, out = ttyIO()
	if code := Run(context.Background(), ios, []string{"device", "list", "--no-color"}); code != 0 || ansiRE.MatchString(out.String()) || !strings.Contains(out.String(), "enabled") {
		t.Errorf("device list --no-color: code %d, %q", code, out.String())
	}
}
