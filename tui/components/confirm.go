package components

import (
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"github.com/outpost-edge/outpost/tui/common"
)

// Confirm is the dialog in front of a destructive action ("Restart module
// tempsensor?"): y runs the action, n or Esc goes back without it. Open it
// with common.Push; it takes itself off the stack either way.
type Confirm struct {
	common.Common
	Question string
	OnYes    tea.Cmd
}

// NewConfirm returns a dialog asking question, running onYes on y.
func NewConfirm(c common.Common, question string, onYes tea.Cmd) *Confirm {
	return &Confirm{Common: c, Question: question, OnYes: onYes}
}

// Title implements common.Titled.
func (c *Confirm) Title() string { return "confirm" }

// Capturing implements common.Capturer: the dialog answers every key
// itself (Esc says no, q does nothing).
func (c *Confirm) Capturing() bool { return true }

// Init implements common.Model.
func (c *Confirm) Init() tea.Cmd { return nil }

// Update implements common.Model.
func (c *Confirm) Update(msg tea.Msg) (common.Model, tea.Cmd) {
	km, ok := msg.(tea.KeyPressMsg)
	if !ok {
		return c, nil
	}
	switch {
	case key.Matches(km, c.KeyMap.Yes):
		return c, tea.Sequence(common.Pop(), c.OnYes)
	case key.Matches(km, c.KeyMap.No):
		return c, common.Pop()
	}
	return c, nil
}

// View implements common.Model.
func (c *Confirm) View() string {
	box := c.Styles.Dialog.Render(c.Question + "\n\n" + c.Styles.Muted.Render("y: yes   n/esc: no"))
	return lipgloss.Place(c.Width, c.Height, lipgloss.Center, lipgloss.Center, box)
}

// SetSize implements common.Component.
func (c *Confirm) SetSize(w, h int) { c.Common.SetSize(w, h) }

// ShortHelp implements help.KeyMap.
func (c *Confirm) ShortHelp() []key.Binding { return []key.Binding{c.KeyMap.Yes, c.KeyMap.No} }

// FullHelp implements help.KeyMap.
func (c *Confirm) FullHelp() [][]key.Binding { return [][]key.Binding{c.ShortHelp()} }
