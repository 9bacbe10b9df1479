package components

import (
	"errors"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/outpost-edge/outpost/tui/common"
)

// StatusLine is the one line under the view: the last note or error, with
// the hint the CLI would give. It never hides the view's data: the view
// keeps working on what it has.
type StatusLine struct {
	common.Common
	Text  string
	Hint  string
	IsErr bool
}

// NewStatusLine returns an empty status line.
func NewStatusLine(c common.Common) *StatusLine { return &StatusLine{Common: c} }

// Init implements common.Model.
func (s *StatusLine) Init() tea.Cmd { return nil }

// Update implements common.Model: it shows common.ErrMsg and common.StatusMsg.
func (s *StatusLine) Update(msg tea.Msg) (common.Model, tea.Cmd) {
	switch m := msg.(type) {
	case common.ErrMsg:
		s.SetError(m.Err, m.Hint)
	case common.StatusMsg:
		s.Text, s.Hint, s.IsErr = m.Text, "", false
	}
	return s, nil
}

// SetError shows err and what to do next (hint, else the error's own).
func (s *StatusLine) SetError(err error, hint string) {
	if err == nil {
		s.Text, s.Hint, s.IsErr = "", "", false
		return
	}
	if hint == "" {
		var h common.Hinter
		if errors.As(err, &h) {
			hint = h.Hint()
		}
	}
	s.Text, s.Hint, s.IsErr = err.Error(), hint, true
}

// View implements common.Model.
func (s *StatusLine) View() string {
	if s.Text == "" {
		return ""
	}
	st := s.Styles
	line := st.StatusInfo.Render(s.Text)
	if s.IsErr {
		line = st.StatusError.Render("error: " + s.Text)
		if s.Hint != "" {
			line += st.StatusHint.Render(" — " + s.Hint)
		}
	}
	if ansi.StringWidth(line) > s.Width {
		line = ansi.Truncate(line, s.Width, "…")
	}
	return line
}

// SetSize implements common.Component.
func (s *StatusLine) SetSize(w, h int) { s.Common.SetSize(w, h) }

// ShortHelp implements help.KeyMap.
func (s *StatusLine) ShortHelp() []key.Binding { return nil }

// FullHelp implements help.KeyMap.
func (s *StatusLine) FullHelp() [][]key.Binding { return nil }
