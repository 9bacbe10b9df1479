package common

import (
	"os"
	"strings"

	"github.com/charmbracelet/bubbles/help"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"
)

// Styles is every style of the UI, in one place. Colours are lipgloss
// adaptive colours (one for light backgrounds, one for dark); without
// colour (NO_COLOR, --no-color) every style keeps its layout and loses its
// colours, and what colour would say (the selected row, a changed key) is
// said with reverse video or a marker instead.
type Styles struct {
	Color bool
	r     *lipgloss.Renderer

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

// NewStyles returns the styles, with colour or without.
func NewStyles(color bool) *Styles {
	r := lipgloss.NewRenderer(os.Stdout)
	if !color {
		r.SetColorProfile(termenv.Ascii)
		r.SetHasDarkBackground(true) // do not ask the terminal
	}
	ad := func(light, dark string) lipgloss.AdaptiveColor {
		return lipgloss.AdaptiveColor{Light: light, Dark: dark}
	}
	var (
		accent = ad("#5A3FC0", "#B7A6FF")
		muted  = ad("#6B6B6B", "#8A8A8A")
		green  = ad("#1A7F37", "#56D364")
		red    = ad("#CF222E", "#FF7B72")
		yellow = ad("#9A6700", "#E3B341")
		selBg  = ad("#DDD6FE", "#3B2F73")
	)
	n := r.NewStyle
	s := &Styles{Color: color, r: r}
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
	if !color {
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

// Renderer is the renderer the styles were made with.
func (s *Styles) Renderer() *lipgloss.Renderer { return s.r }

// Status colours a cell that starts with a status word ("running",
// "failed (exit 3)"); other cells come back as they are.
func (s *Styles) Status(cell string) string {
	word, _, _ := strings.Cut(cell, " ")
	if st, ok := s.status[strings.ToLower(word)]; ok && s.Color {
		return st.Render(cell)
	}
	return cell
}
