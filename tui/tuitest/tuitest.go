// Package tuitest runs the terminal UI's models in tests: at a fixed size,
// without colour, with a fixed clock, and compares what they show with
// golden files (testdata/*.golden; go test -update rewrites them).
package tuitest

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/charmbracelet/x/exp/teatest"

	"github.com/outpost-edge/outpost/tui/common"
)

// Clock is the fixed time of the tests' clocks.
var Clock = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Common returns a Common without colour whose clock says Clock.
func Common(t testing.TB) common.Common {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return common.New(ctx, false, func() time.Time { return Clock })
}

// Deadline bounds each wait: a hang fails the test instead of blocking it,
// and no correct run comes near it.
const Deadline = 20 * time.Second

// Start runs m at w×h.
func Start(t testing.TB, m tea.Model, w, h int) *teatest.TestModel {
	t.Helper()
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(w, h))
	t.Cleanup(func() { _ = tm.Quit() })
	return tm
}

// WaitFor waits until the program's output has shown every one of want.
// The output is the terminal's byte stream (with cursor moves), so each
// want should sit on one line.
func WaitFor(t testing.TB, tm *teatest.TestModel, want ...string) {
	t.Helper()
	var seen bytes.Buffer
	teatest.WaitFor(t, tm.Output(), func(b []byte) bool {
		seen.Write(b)
		s := ansi.Strip(seen.String())
		for _, w := range want {
			if !strings.Contains(s, w) {
				return false
			}
		}
		return true
	}, teatest.WithDuration(Deadline), teatest.WithCheckInterval(5*time.Millisecond))
}

// Keys sends each key of keys: names as tea.KeyMsg.String() spells them
// ("esc", "enter", "ctrl+s", "down") or single characters.
func Keys(tm *teatest.TestModel, keys ...string) {
	for _, k := range keys {
		tm.Send(Key(k))
	}
}

// Key makes the tea.KeyMsg of a key's name.
func Key(k string) tea.KeyMsg {
	for t, name := range keyNames {
		if name == k {
			return tea.KeyMsg{Type: t}
		}
	}
	return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(k)}
}

var keyNames = map[tea.KeyType]string{
	tea.KeyEnter: "enter", tea.KeyEsc: "esc", tea.KeyTab: "tab", tea.KeyUp: "up", tea.KeyDown: "down",
	tea.KeyLeft: "left", tea.KeyRight: "right", tea.KeyPgUp: "pgup", tea.KeyPgDown: "pgdown",
	tea.KeyHome: "home", tea.KeyEnd: "end", tea.KeyCtrlS: "ctrl+s", tea.KeyCtrlP: "ctrl+p",
	tea.KeyCtrlC: "ctrl+c", tea.KeyCtrlK: "ctrl+k", tea.KeyBackspace: "backspace", tea.KeySpace: " ",
}

// Final quits the program and returns the model as it ended.
func Final(t testing.TB, tm *teatest.TestModel) tea.Model {
	t.Helper()
	if err := tm.Quit(); err != nil {
		t.Fatal(err)
	}
	return tm.FinalModel(t, teatest.WithFinalTimeout(Deadline))
}

// Golden compares view (colour stripped, trailing spaces kept off) with
// testdata/<test name>.golden.
func Golden(t *testing.T, view string) {
	t.Helper()
	lines := strings.Split(ansi.Strip(view), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	golden.RequireEqual(t, []byte(strings.Join(lines, "\n")+"\n"))
}
