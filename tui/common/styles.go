package common

import (
	"image/color"
	"strings"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/textarea"
	"charm.land/bubbles/v2/textinput"
	"charm.land/lipgloss/v2"
)

// Styles is every style of the UI, in one place. Colours come in pairs, one
// for light backgrounds and one for dark: the styles start dark, and the
// program makes them again (SetDark) when the terminal answers its
// background colour query (tea.BackgroundColorMsg) — only the TUI asks the
// terminal, never a plain command. Without colour (NO_COLOR, --no-color)
// every style keeps its layout and loses its colours, and what colour would
// say (the selected row, a changed key) is said with reverse video or a
// marker instead.
type Styles struct {
	Color bool
	Dark  bool // the colours are those for a dark background

	Header       lipgloss.Style // the top line
	HeaderApp    lipgloss.Style // "outpost"
	HeaderTarget lipgloss.Style // what it is connected to
	HeaderUp     lipgloss.Style // "● connected"
	HeaderDown   lipgloss.Style // "○ offline"
	Trail        lipgloss.Style // the view stack, "fleet › dev-1"

	Title       lipgloss.Style // a view's title line
	TableHeader lipgloss.Style
	Selected    lipgloss.Style // the row (or node) under the cursor
	Muted       lipgloss.Style // secondary text: counts, "-", timestamps
	Filter      lipgloss.Style // the "/" prompt
	Changed     lipgloss.Style // a key changed by a live update, for a moment
	Removed     lipgloss.Style // a removed key in a patch or a conflict
	Added       lipgloss.Style
	Conflict    lipgloss.Style // a key changed on both sides
	Key         lipgloss.Style // a JSON key
	Tab         lipgloss.Style
	ActiveTab   lipgloss.Style
	Box         lipgloss.Style // a bordered panel

	StatusInfo  lipgloss.Style
	StatusError lipgloss.Style
	StatusHint  lipgloss.Style

	Dialog lipgloss.Style

	Help help.Styles

	status map[string]lipgloss.Style // status word → style
}

// NewStyles returns the styles, with colour or without, for a dark
// background or a light one.
func NewStyles(colour, dark bool) *Styles {
	ld := lipgloss.LightDark(dark)
	ad := func(light, dark string) color.Color {
		if !colour {
			return lipgloss.NoColor{}
		}
		return ld(lipgloss.Color(light), lipgloss.Color(dark))
	}
	var (
		accent = ad("#5A3FC0", "#B7A6FF")
		muted  = ad("#6B6B6B", "#8A8A8A")
		green  = ad("#1A7F37", "#56D364")
		red    = ad("#CF222E", "#FF7B72")
		yellow = ad("#9A6700", "#E3B341")
		selBg  = ad("#DDD6FE", "#3B2F73")
	)
	n := lipgloss.NewStyle
	s := &Styles{Color: colour, Dark: dark}
	s.Header = n().Bold(true)
	s.HeaderApp = n().Bold(true).Foreground(accent)
	s.HeaderTarget = n()
	s.HeaderUp = n().Foreground(green)
	s.HeaderDown = n().Foreground(red).Bold(true)
	s.Trail = n().Foreground(muted)
	s.Title = n().Bold(true)
	s.TableHeader = n().Bold(true).Underline(true)
	s.Selected = n().Background(selBg).Bold(true)
	s.Muted = n().Foreground(muted)
	s.Filter = n().Foreground(accent)
	s.Changed = n().Foreground(yellow).Bold(true)
	s.Removed = n().Foreground(red)
	s.Added = n().Foreground(green)
	s.Conflict = n().Foreground(red).Bold(true)
	s.Key = n().Foreground(accent)
	s.Tab = n().Foreground(muted).Padding(0, 1)
	s.ActiveTab = n().Bold(true).Underline(true).Padding(0, 1)
	s.Box = n().Border(lipgloss.NormalBorder()).BorderForeground(muted)
	s.StatusInfo = n().Foreground(muted)
	s.StatusError = n().Foreground(red).Bold(true)
	s.StatusHint = n().Foreground(muted)
	s.Dialog = n().Border(lipgloss.RoundedBorder()).BorderForeground(accent).Padding(0, 2)
	if !colour {
		s.Selected = n().Reverse(true)
	}
	s.Help = help.Styles{
		ShortKey:       n().Bold(true),
		ShortDesc:      n().Foreground(muted),
		ShortSeparator: n().Foreground(muted),
		Ellipsis:       n().Foreground(muted),
		FullKey:        n().Bold(true),
		FullDesc:       n().Foreground(muted),
		FullSeparator:  n().Foreground(muted),
	}
	s.status = map[string]lipgloss.Style{}
	for _, w := range []string{"running", "enabled", "connected", "healthy", "ok", "200"} {
		s.status[w] = n().Foreground(green)
	}
	for _, w := range []string{"failed", "unhealthy", "disabled", "dead", "offline", "error", "400", "500"} {
		s.status[w] = n().Foreground(red)
	}
	for _, w := range []string{"backoff", "stopped", "disconnected", "pending", "unknown", "406", "412"} {
		s.status[w] = n().Foreground(yellow)
	}
	return s
}

// SetDark makes the styles again for a dark background or a light one, in
// place: every component shares them.
func (s *Styles) SetDark(dark bool) { *s = *NewStyles(s.Color, dark) }

// TextInput is the style of a one-line input (a filter, a search) whose
// prompt is prompt. (Without colour the program's colour profile takes the
// inputs' colours off.)
func (s *Styles) TextInput(prompt lipgloss.Style) textinput.Styles {
	ts := textinput.DefaultStyles(s.Dark)
	ts.Focused.Prompt, ts.Blurred.Prompt = prompt, prompt
	return ts
}

// TextArea is the style of the twin editor.
func (s *Styles) TextArea() textarea.Styles { return textarea.DefaultStyles(s.Dark) }

// Status colours a cell that starts with a status word ("running",
// "failed (exit 3)"); other cells come back as they are.
func (s *Styles) Status(cell string) string {
	word, _, _ := strings.Cut(cell, " ")
	if st, ok := s.status[strings.ToLower(word)]; ok && s.Color {
		return st.Render(cell)
	}
	return cell
}
