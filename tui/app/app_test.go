package app_test

import (
	"bytes"
	"context"
	"fmt"
	"image/color"
	"io"
	"strings"
	"testing"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/outpost-edge/outpost/tui/app"
	"github.com/outpost-edge/outpost/tui/common"
	"github.com/outpost-edge/outpost/tui/components"
	"github.com/outpost-edge/outpost/tui/tuitest"
)

// list is a view of rows that opens a detail view on Enter and asks before
// "restarting" one (R).
type list struct {
	common.Common
	table     *components.Table
	restarted []string
}

type restartedMsg struct{ id string }

func newList(c common.Common, n int) *list {
	t := components.NewTable(c,
		components.Column{Title: "NAME", Width: 10, Grow: true},
		components.Column{Title: "STATUS", Width: 8, Status: true},
	)
	rows := make([]components.Row, n)
	for i := range rows {
		id := fmt.Sprintf("module-%03d", i)
		st := "running"
		if i%3 == 1 {
			st = "failed"
		}
		rows[i] = components.Row{ID: id, Cells: []string{id, st}}
	}
	t.SetRows(rows)
	return &list{Common: c, table: t}
}

func (l *list) Title() string      { return "modules" }
func (l *list) Capturing() bool    { return l.table.Capturing() }
func (l *list) ConsumesBack() bool { return l.table.HasFilter() }
func (l *list) Init() tea.Cmd      { return nil }
func (l *list) View() string       { return l.table.View() }
func (l *list) SetSize(w, h int)   { l.Common.SetSize(w, h); l.table.SetSize(w, h) }
func (l *list) ShortHelp() []key.Binding {
	return append(l.table.ShortHelp(), l.KeyMap.Select, l.KeyMap.Restart)
}
func (l *list) FullHelp() [][]key.Binding {
	return append(l.table.FullHelp(), []key.Binding{l.KeyMap.Select, l.KeyMap.Restart})
}

func (l *list) Update(msg tea.Msg) (common.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case restartedMsg:
		l.restarted = append(l.restarted, msg.id)
		return l, common.Status("restarted " + msg.id)
	case tea.KeyPressMsg:
		r, ok := l.table.Selected()
		switch {
		case !l.table.Capturing() && ok && key.Matches(msg, l.KeyMap.Select):
			return l, common.Push(&detail{Common: l.Common, id: r.ID})
		case !l.table.Capturing() && ok && key.Matches(msg, l.KeyMap.Restart):
			return l, common.Push(components.NewConfirm(l.Common, "Restart "+r.ID+"?",
				func() tea.Msg { return restartedMsg{r.ID} }))
		}
		_, cmd := l.table.Update(msg)
		return l, cmd
	}
	return l, nil
}

type detail struct {
	common.Common
	id string
}

func (d *detail) Title() string                          { return d.id }
func (d *detail) Init() tea.Cmd                          { return nil }
func (d *detail) Update(tea.Msg) (common.Model, tea.Cmd) { return d, nil }
func (d *detail) View() string                           { return "details of " + d.id }
func (d *detail) SetSize(w, h int)                       { d.Common.SetSize(w, h) }
func (d *detail) ShortHelp() []key.Binding               { return nil }
func (d *detail) FullHelp() [][]key.Binding              { return nil }

func start(t *testing.T, n, w, h int) (*app.Model, *list, func(...string), func() *app.Model) {
	_, l, keys, _, final := startW(t, n, w, h)
	return nil, l, keys, final
}

// startW also returns a function that waits until the screen shows texts.
func startW(t *testing.T, n, w, h int) (*app.Model, *list, func(...string), func(...string), func() *app.Model) {
	c := tuitest.Common(t)
	l := newList(c, n)
	m := app.New(c, "hub example.test:8443", l)
	tm := tuitest.Start(t, m, w, h)
	keys := func(k ...string) { tuitest.Keys(tm, k...) }
	wait := func() *app.Model {
		return tuitest.Final(t, tm).(*app.Model)
	}
	tuitest.WaitFor(t, tm, "module-000")
	return m, l, keys, func(s ...string) { tuitest.WaitFor(t, tm, s...) }, wait
}

func TestGoldenList80x24(t *testing.T) {
	_, _, keys, final := start(t, 40, 80, 24)
	keys("j", "j")
	tuitest.Golden(t, final().Render())
}

func TestGoldenList120x40(t *testing.T) {
	_, _, keys, final := start(t, 40, 120, 40)
	keys("G")
	tuitest.Golden(t, final().Render())
}

func TestGoldenFullHelp(t *testing.T) {
	_, _, keys, final := start(t, 5, 80, 24)
	keys("?")
	tuitest.Golden(t, final().Render())
}

func TestStackEnterEscBack(t *testing.T) {
	_, _, keys, waitFor, final := startW(t, 5, 80, 24)
	keys("j", "enter")
	waitFor("details of module-001")
	m := final()
	if m.Depth() != 2 || !strings.Contains(m.Render(), "details of module-001") || !strings.Contains(m.Render(), "modules › module-001") {
		t.Fatalf("after enter: depth %d, view:\n%s", m.Depth(), m.Render())
	}

	_, _, keys, waitFor, final = startW(t, 5, 80, 24)
	keys("j", "enter")
	waitFor("details of module-001")
	keys("esc")
	m = final()
	if m.Depth() != 1 {
		t.Fatalf("after enter, esc: depth %d, want 1 (back on the list)", m.Depth())
	}
}

func TestFilterTakesKeysAndEscClearsIt(t *testing.T) {
	// q typed into the filter is a letter, not quit; Esc clears the filter
	// rather than going back.
	_, l, keys, final := start(t, 40, 80, 24)
	keys("/", "0", "1", "q")
	final()
	if got := l.table.FilterText(); got != "01q" {
		t.Fatalf("filter %q, want 01q (q went to the app?)", got)
	}
	if shown, _ := l.table.Count(); shown != 0 {
		t.Fatalf("filter 01q shows %d rows, want 0", shown)
	}

	_, l, keys, final = start(t, 40, 80, 24)
	keys("/", "0", "1", "enter", "esc")
	m := final()
	if l.table.FilterText() != "" || m.Depth() != 1 {
		t.Fatalf("esc after a filter: filter %q, depth %d; want the filter cleared and the view kept", l.table.FilterText(), m.Depth())
	}
}

func TestFilterCountsMatches(t *testing.T) {
	_, l, keys, final := start(t, 40, 80, 24)
	keys("/", "0", "1", "enter")
	m := final()
	shown, total := l.table.Count()
	// module-001, module-010 … module-019
	if shown != 11 || total != 40 {
		t.Fatalf("filter 01: %d of %d rows, want 11 of 40", shown, total)
	}
	if !strings.Contains(m.Render(), "/01  11 of 40") {
		t.Fatalf("the filter line does not say 11 of 40:\n%s", m.Render())
	}
}

func TestConfirmBeforeAction(t *testing.T) {
	_, l, keys, waitFor, final := startW(t, 5, 80, 24)
	keys("R")
	waitFor("Restart module-000?")
	keys("n")
	waitFor("▸ module-000")
	keys("j", "R")
	waitFor("Restart module-001?")
	keys("y")
	waitFor("restarted module-001")
	m := final()
	if len(l.restarted) != 1 || l.restarted[0] != "module-001" {
		t.Fatalf("restarted %v, want [module-001] (n must not restart module-000)", l.restarted)
	}
	if m.Depth() != 1 || !strings.Contains(m.Render(), "restarted module-001") {
		t.Fatalf("after y: depth %d, view:\n%s", m.Depth(), m.Render())
	}
}

func TestQuitKeepsNothing(t *testing.T) {
	c := tuitest.Common(t)
	m := app.New(c, "hub h", newList(c, 3))
	tm := tuitest.Start(t, m, 80, 24)
	tuitest.WaitFor(t, tm, "module-000")
	tuitest.Keys(tm, "q")
	tm.WaitFinished(t)
}

// TestBackgroundColour: with colour, the UI asks the terminal its
// background colour (OSC 11) and takes the light colours when the answer is
// light; without colour it asks nothing.
func TestBackgroundColour(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := common.New(ctx, true, func() time.Time { return tuitest.Clock })
	m := app.New(c, "hub h", newList(c, 3))
	tm := tuitest.Start(t, m, 80, 24)
	tuitest.WaitFor(t, tm, "module-000")
	tm.Send(tea.BackgroundColorMsg{Color: color.White})
	m = tuitest.Final(t, tm).(*app.Model)
	out, err := io.ReadAll(tm.FinalOutput(t))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte("\x1b]11;?")) {
		t.Errorf("the UI with colour did not ask the background colour; it wrote %q", out)
	}
	// #5A3FC0 is the accent on a light background ("outpost" in the header).
	if m.Styles.Dark || !strings.Contains(m.Render(), "38;2;90;63;192m") {
		t.Errorf("after a white background: dark %v, header %q", m.Styles.Dark, strings.SplitN(m.Render(), "\n", 2)[0])
	}

	c = tuitest.Common(t)
	tm = tuitest.Start(t, app.New(c, "hub h", newList(c, 3)), 80, 24)
	tuitest.WaitFor(t, tm, "module-000")
	tuitest.Final(t, tm)
	if out, _ := io.ReadAll(tm.FinalOutput(t)); bytes.Contains(out, []byte("\x1b]11;?")) {
		t.Errorf("the UI without colour asked the background colour: %q", out)
	}
}
