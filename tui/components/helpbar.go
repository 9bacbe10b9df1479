package components

import (
	"strings"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"

	"github.com/outpost-edge/outpost/tui/common"
)

// HelpBar is the bottom line: the front view's main keys, or with `?` all
// of its keys and the global ones, in columns.
type HelpBar struct {
	common.Common
	model help.Model
}

// NewHelpBar returns a help bar.
func NewHelpBar(c common.Common) *HelpBar {
	m := help.New()
	m.Styles = c.Styles.Help
	return &HelpBar{Common: c, model: m}
}

// ShowAll reports whether full help is shown.
func (h *HelpBar) ShowAll() bool { return h.model.ShowAll }

// Toggle switches between short and full help.
func (h *HelpBar) Toggle() { h.model.ShowAll = !h.model.ShowAll }

// SetSize sets the width the help may take.
func (h *HelpBar) SetSize(w, hgt int) {
	h.Common.SetSize(w, hgt)
	h.model.SetWidth(w)
}

// View renders the help of km with the global keys added.
func (h *HelpBar) View(km help.KeyMap) string {
	h.model.Styles = h.Styles.Help // the terminal's background may have changed them
	return h.model.View(withGlobals{km, h.KeyMap})
}

// Height is the number of lines View(km) takes.
func (h *HelpBar) Height(km help.KeyMap) int {
	return strings.Count(h.View(km), "\n") + 1
}

// withGlobals adds the keys every view has to a view's keys.
type withGlobals struct {
	view help.KeyMap
	keys *common.KeyMap
}

func (w withGlobals) ShortHelp() []key.Binding {
	return append(append([]key.Binding{}, w.view.ShortHelp()...), w.keys.Back, w.keys.Help, w.keys.Quit)
}

func (w withGlobals) FullHelp() [][]key.Binding {
	return append(append([][]key.Binding{}, w.view.FullHelp()...), w.keys.Globals())
}
