// Package app is the frame of outpost's terminal UI: the header, a stack
// of views (Enter opens, Esc goes back), the status line and the help bar,
// and Run, which starts the program on a terminal and leaves it as it found
// it.
package app

import (
	"context"
	"errors"
	"io"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/colorprofile"

	"github.com/outpost-edge/outpost/tui/common"
	"github.com/outpost-edge/outpost/tui/components"
)

// Model is the whole UI: the frame around a stack of views.
type Model struct {
	common.Common
	header *components.Header
	status *components.StatusLine
	help   *components.HelpBar
	stack  []common.Component
}

// New returns the UI showing root, connected to target (said in the header).
func New(c common.Common, target string, root common.Component) *Model {
	m := &Model{
		Common: c,
		header: components.NewHeader(c, target),
		status: components.NewStatusLine(c),
		help:   components.NewHelpBar(c),
		stack:  []common.Component{root},
	}
	m.retitle()
	return m
}

// Front is the view in front.
func (m *Model) Front() common.Component { return m.stack[len(m.stack)-1] }

// Depth is the number of views on the stack.
func (m *Model) Depth() int { return len(m.stack) }

// Init implements tea.Model. With colour it asks the terminal its
// background colour (the answer, tea.BackgroundColorMsg, picks the light or
// the dark colours); a terminal that never answers keeps the dark ones.
func (m *Model) Init() tea.Cmd {
	if !m.Styles.Color {
		return m.stack[0].Init()
	}
	return tea.Batch(m.stack[0].Init(), tea.RequestBackgroundColor)
}

// Update implements tea.Model.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.SetSize(msg.Width, msg.Height)
		return m, nil
	case tea.BackgroundColorMsg:
		m.Styles.SetDark(msg.IsDark())
		return m, nil
	case tea.KeyPressMsg:
		// Keys typed faster than the program reads them come each in a
		// message of its own ("jjj" is three).
		return m.key(msg)
	case tea.PasteMsg:
		// Pasted text is typed into the front view (a filter, the editor).
		nv, cmd := m.Front().Update(msg)
		m.stack[len(m.stack)-1] = nv.(common.Component)
		m.retitle()
		return m, cmd
	case common.PushMsg:
		m.stack = append(m.stack, msg.View)
		m.layout()
		m.retitle()
		return m, msg.View.Init()
	case common.ReplaceMsg:
		m.stack[len(m.stack)-1] = msg.View
		m.layout()
		m.retitle()
		return m, msg.View.Init()
	case common.PopMsg:
		m.pop()
		return m, nil
	case common.ErrMsg, common.StatusMsg:
		m.status.Update(msg)
		m.layout()
		return m, nil
	case common.ConnMsg:
		m.header.Update(msg)
		return m, nil
	}
	// Data messages go to every view on the stack: a view behind the front
	// one keeps following its watches, and shows the truth when the user
	// comes back to it.
	var cmds []tea.Cmd
	for i, v := range m.stack {
		nv, cmd := v.Update(msg)
		m.stack[i] = nv.(common.Component)
		cmds = append(cmds, cmd)
	}
	m.retitle()
	return m, tea.Batch(cmds...)
}

func (m *Model) key(msg tea.KeyPressMsg) (tea.Model, tea.Cmd) {
	k := m.KeyMap
	front := m.Front()
	if msg.Keystroke() == "ctrl+c" {
		return m, tea.Quit
	}
	capturing := false
	if c, ok := front.(common.Capturer); ok {
		capturing = c.Capturing()
	}
	if !capturing {
		switch {
		case key.Matches(msg, k.Quit):
			return m, tea.Quit
		case key.Matches(msg, k.Help):
			m.help.Toggle()
			m.layout()
			return m, nil
		case key.Matches(msg, k.Back):
			if b, ok := front.(common.BackConsumer); !ok || !b.ConsumesBack() {
				if m.help.ShowAll() {
					m.help.Toggle()
					m.layout()
					return m, nil
				}
				m.pop()
				return m, nil
			}
		}
	}
	nv, cmd := front.Update(msg)
	m.stack[len(m.stack)-1] = nv.(common.Component)
	m.retitle()
	return m, cmd
}

func (m *Model) pop() {
	if len(m.stack) > 1 {
		m.stack = m.stack[:len(m.stack)-1]
		m.layout()
		m.retitle()
	}
}

func (m *Model) retitle() {
	trail := make([]string, 0, len(m.stack))
	for _, v := range m.stack {
		if t, ok := v.(common.Titled); ok {
			trail = append(trail, t.Title())
		}
	}
	m.header.Trail = trail
}

// SetSize sizes the frame and every view.
func (m *Model) SetSize(w, h int) {
	m.Common.SetSize(w, h)
	m.layout()
}

// bodyHeight is what is left for the views.
func (m *Model) bodyHeight() int {
	return max(m.Height-2-m.help.Height(m.Front()), 1)
}

func (m *Model) layout() {
	m.header.SetSize(m.Width, 1)
	m.status.SetSize(m.Width, 1)
	m.help.SetSize(m.Width, 0)
	h := m.bodyHeight()
	for _, v := range m.stack {
		v.SetSize(m.Width, h)
	}
}

// View implements tea.Model: the screen (Render) on the alternate screen.
func (m *Model) View() tea.View {
	v := tea.NewView(m.Render())
	v.AltScreen = true
	return v
}

// Render is what the screen shows: header, the front view (exactly its
// height), status line, help.
func (m *Model) Render() string {
	if m.Width == 0 {
		return ""
	}
	body := m.Front().View()
	lines := strings.Split(body, "\n")
	h := m.bodyHeight()
	if len(lines) > h {
		lines = lines[:h]
	}
	for len(lines) < h {
		lines = append(lines, "")
	}
	var b strings.Builder
	b.WriteString(m.header.View())
	b.WriteByte('\n')
	b.WriteString(strings.Join(lines, "\n"))
	b.WriteByte('\n')
	b.WriteString(m.status.View())
	b.WriteByte('\n')
	b.WriteString(m.help.View(m.Front()))
	return b.String()
}

// Run runs the UI on a terminal (in and out) until the user quits or ctx
// ends. It uses the alternate screen and restores the terminal on every
// way out, Ctrl-C included.
func Run(ctx context.Context, m *Model, in io.Reader, out io.Writer) error {
	opts := []tea.ProgramOption{tea.WithContext(ctx), tea.WithInput(in), tea.WithOutput(out)}
	if !m.Styles.Color {
		// No colour, but bold, underline and reverse video (the selected
		// row) stay.
		opts = append(opts, tea.WithColorProfile(colorprofile.Ascii))
	}
	p := tea.NewProgram(m, opts...)
	_, err := p.Run()
	if errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil {
		return nil // interrupted: the terminal is restored, nothing to say
	}
	return err
}
