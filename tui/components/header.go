package components

import (
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/outpost-edge/outpost/tui/common"
)

// Header is the top line: what the UI is connected to, whether the link is
// up, and where in the view stack the user is.
type Header struct {
	common.Common
	Target string   // "hub myhub:8443", "device socket /run/outpost/mgmt.sock"
	Up     bool     // the link works
	Known  bool     // Up has been learnt (until then neither up nor down is shown)
	Note   string   // "offline since 12:00:03", "token expired"
	Trail  []string // titles of the views in the stack
}

// NewHeader returns a header for target.
func NewHeader(c common.Common, target string) *Header {
	return &Header{Common: c, Target: target}
}

// Init implements common.Model.
func (h *Header) Init() tea.Cmd { return nil }

// Update implements common.Model: it follows common.ConnMsg.
func (h *Header) Update(msg tea.Msg) (common.Model, tea.Cmd) {
	if m, ok := msg.(common.ConnMsg); ok {
		if m.Target != "" {
			h.Target = m.Target
		}
		h.Up, h.Known, h.Note = m.Up, true, m.Note
	}
	return h, nil
}

// View implements common.Model.
func (h *Header) View() string {
	st := h.Styles
	parts := []string{st.HeaderApp.Render("outpost"), st.HeaderTarget.Render(h.Target)}
	if h.Known {
		state := st.HeaderUp.Render("● connected")
		if !h.Up {
			state = st.HeaderDown.Render("○ unreachable")
		}
		if h.Note != "" {
			state += " " + st.Muted.Render(h.Note)
		}
		parts = append(parts, state)
	}
	line := strings.Join(parts, " │ ")
	if len(h.Trail) > 0 {
		line += " │ " + st.Trail.Render(strings.Join(h.Trail, " › "))
	}
	if ansi.StringWidth(line) > h.Width {
		line = ansi.Truncate(line, h.Width, "…")
	}
	return line
}

// SetSize implements common.Component.
func (h *Header) SetSize(w, hgt int) { h.Common.SetSize(w, hgt) }

// ShortHelp implements help.KeyMap.
func (h *Header) ShortHelp() []key.Binding { return nil }

// FullHelp implements help.KeyMap.
func (h *Header) FullHelp() [][]key.Binding { return nil }
