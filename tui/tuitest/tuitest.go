// Package tuitest runs the terminal UI's models in tests: at a fixed size,
// without colour, with a fixed clock, and compares what they show with
// golden files (testdata/*.golden; go test -update rewrites them).
package tuitest

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/charmbracelet/x/exp/teatest/v2"

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
	tm := teatest.NewTestModel(t, probe{m}, teatest.WithInitialTermSize(w, h))
	t.Cleanup(func() { _ = tm.Quit() })
	return tm
}

// probe runs the model under test and, on a screenMsg, says what the model
// shows: read in the program's goroutine, as the renderer reads it.
type probe struct{ m tea.Model }

// screenMsg asks the probe for the screen.
type screenMsg chan<- string

func (p probe) Init() tea.Cmd { return p.m.Init() }

func (p probe) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	if ch, ok := msg.(screenMsg); ok {
		ch <- p.m.View().Content
		return p, nil
	}
	m, cmd := p.m.Update(msg)
	return probe{m}, cmd
}

func (p probe) View() tea.View { return p.m.View() }

// Screen returns what the program shows now (colour stripped), or false
// when the program does not answer within Deadline.
func Screen(tm *teatest.TestModel) (string, bool) {
	ch := make(chan string, 1)
	tm.Send(screenMsg(ch))
	select {
	case s := <-ch:
		return ansi.Strip(s), true
	case <-time.After(Deadline):
		return "", false
	}
}

// WaitFor waits until the program's screen shows every one of want. (The
// renderer writes only what changed, with cursor moves and erasures, so
// its byte stream is not the screen: the screen is asked of the model.)
func WaitFor(t testing.TB, tm *teatest.TestModel, want ...string) {
	t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < Deadline {
		s, ok := Screen(tm)
		if !ok {
			break
		}
		last = s
		found := true
		for _, w := range want {
			if !strings.Contains(s, w) {
				found = false
				break
			}
		}
		if found {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the screen never showed %q within %s; it shows:\n%s", want, Deadline, last)
}

// Keys sends each key of keys: names as tea.KeyPressMsg.String() spells
// them ("esc", "enter", "ctrl+s", "down", "space") or single characters;
// any other text is typed, a key per character.
func Keys(tm *teatest.TestModel, keys ...string) {
	for _, k := range keys {
		if _, named := keyCodes[k]; named || strings.HasPrefix(k, "ctrl+") || len([]rune(k)) == 1 {
			tm.Send(Key(k))
			continue
		}
		for _, r := range k {
			tm.Send(Key(string(r)))
		}
	}
}

// Key makes the tea.KeyPressMsg of a key's name.
func Key(k string) tea.KeyPressMsg {
	if k == "space" || k == " " {
		return tea.KeyPressMsg{Code: tea.KeySpace, Text: " "} // as a terminal sends it
	}
	if c, ok := keyCodes[k]; ok {
		return tea.KeyPressMsg{Code: c}
	}
	if mod, c, ok := strings.Cut(k, "+"); ok && mod == "ctrl" && len(c) == 1 {
		return tea.KeyPressMsg{Code: rune(c[0]), Mod: tea.ModCtrl}
	}
	r := []rune(k)
	if len(r) != 1 {
		panic("tuitest.Key: not a key: " + k)
	}
	if unicode.IsUpper(r[0]) {
		return tea.KeyPressMsg{Code: unicode.ToLower(r[0]), ShiftedCode: r[0], Mod: tea.ModShift, Text: k}
	}
	return tea.KeyPressMsg{Code: r[0], Text: k}
}

var keyCodes = map[string]rune{
	"enter": tea.KeyEnter, "esc": tea.KeyEscape, "tab": tea.KeyTab, "up": tea.KeyUp, "down": tea.KeyDown,
	"left": tea.KeyLeft, "right": tea.KeyRight, "pgup": tea.KeyPgUp, "pgdown": tea.KeyPgDown,
	"home": tea.KeyHome, "end": tea.KeyEnd, "backspace": tea.KeyBackspace, "space": tea.KeySpace,
}

// Final quits the program and returns the model as it ended.
func Final(t testing.TB, tm *teatest.TestModel) tea.Model {
	t.Helper()
	if err := tm.Quit(); err != nil {
		t.Fatal(err)
	}
	return tm.FinalModel(t, teatest.WithFinalTimeout(Deadline)).(probe).m
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
