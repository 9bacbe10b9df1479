// Package common is what every part of outpost's terminal UI shares: the
// context the views run in (Common: context, size, clock, one Styles, one
// KeyMap), the Component interface every view and widget implements, and
// the messages that move between them (errors, status, the view stack).
//
// Views get their data only as messages from commands that wrap the typed
// clients (internal/hubclient, internal/mgmtclient); nothing is fetched in
// View.
package common

import (
	"context"
	"time"

	"charm.land/bubbles/v2/help"
	tea "charm.land/bubbletea/v2"
)

// Common is the context a component runs in. Components embed it (by
// value; its pointers are shared) and call SetSize on it.
type Common struct {
	Ctx    context.Context
	Width  int
	Height int
	Now    func() time.Time
	Styles *Styles
	KeyMap *KeyMap
}

// New returns the Common of a program: styles with colour or without
// (NO_COLOR, --no-color, not a terminal) and for a dark background until
// the terminal says otherwise, the default key map, and now (time.Now when
// nil).
func New(ctx context.Context, color bool, now func() time.Time) Common {
	if now == nil {
		now = time.Now
	}
	return Common{Ctx: ctx, Now: now, Styles: NewStyles(color, true), KeyMap: DefaultKeyMap()}
}

// SetSize records the size given to the component.
func (c *Common) SetSize(width, height int) { c.Width, c.Height = width, height }

// Model is a part of the screen run as a Bubble Tea model: View draws its
// lines. (Only the app's frame is a tea.Model: its View is the screen.)
type Model interface {
	Init() tea.Cmd
	Update(tea.Msg) (Model, tea.Cmd)
	View() string
}

// Component is a view or a widget of the UI: a Model that knows its keys
// (for the help bar) and takes the size it is given.
type Component interface {
	Model
	help.KeyMap
	SetSize(width, height int)
}

// Titled is a view with a title (its place in the header's trail, e.g.
// "dev-1/tempsensor").
type Titled interface {
	Title() string
}

// Capturer is a view that, at the moment, takes every key itself (a filter
// or an editor has the focus): the app then leaves q, ?, and Esc to it.
// Ctrl-C always quits.
type Capturer interface {
	Capturing() bool
}

// ErrMsg is an error to show on the status line; the view keeps what it has.
type ErrMsg struct {
	Err  error
	Hint string // what to do next; "" when the error has its own
}

// StatusMsg is a note for the status line.
type StatusMsg struct{ Text string }

// PushMsg puts a view on top of the stack.
type PushMsg struct{ View Component }

// PopMsg takes the front view off the stack (Esc does this).
type PopMsg struct{}

// ReplaceMsg swaps the front view for another.
type ReplaceMsg struct{ View Component }

// ConnMsg tells the header what the UI is connected to and whether the
// link is up.
type ConnMsg struct {
	Target string // e.g. "hub myhub.example:8443" or "device socket /run/outpost/mgmt.sock"
	Up     bool
	Note   string // e.g. "offline since 12:00:03"
}

// Err returns a command that reports err on the status line.
func Err(err error, hint string) tea.Cmd {
	return func() tea.Msg { return ErrMsg{Err: err, Hint: hint} }
}

// Status returns a command that shows text on the status line.
func Status(text string) tea.Cmd {
	return func() tea.Msg { return StatusMsg{Text: text} }
}

// Push returns a command that opens v on top of the current view.
func Push(v Component) tea.Cmd {
	return func() tea.Msg { return PushMsg{View: v} }
}

// Pop returns a command that goes back to the previous view.
func Pop() tea.Cmd {
	return func() tea.Msg { return PopMsg{} }
}

// Hinter is implemented by errors that know what the user should do next
// (hubclient's and mgmtclient's do).
type Hinter interface{ Hint() string }

// BackConsumer is a view that, at the moment, uses Esc itself (to clear a
// filter, to leave a mode) instead of going back.
type BackConsumer interface {
	ConsumesBack() bool
}
