package cli

import (
	"os"
	"strings"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"
	"golang.org/x/term"

	"github.com/outpost-edge/outpost/internal/mgmtclient"
)

// Width is the number of columns of Out when it is a terminal, 0 when it is
// not (a pipe or a file: nothing is cut).
func (s *IOStreams) Width() int {
	if s.width > 0 {
		return s.width
	}
	if !s.outTTY {
		return 0
	}
	if f, ok := s.Out.(*os.File); ok {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil {
			return w
		}
	}
	return 0
}

// SetWidth sets the width Width reports, as on a terminal of n columns; for
// tests.
func (s *IOStreams) SetWidth(n int) { s.width = n }

// minLastColumn is the fewest columns FitLast leaves the last column, however
// narrow the terminal: a reason cut to nothing says nothing.
const minLastColumn = 12

// FitLast cuts the cells of the table's last column (ending them with "…")
// so that each line fits in width columns; 0 cuts nothing. The last column
// keeps at least minLastColumn columns.
func (t *Table) FitLast(width int) {
	if width <= 0 || len(t.header) == 0 {
		return
	}
	last := len(t.header) - 1
	widths := make([]int, last)
	for i := range widths {
		widths[i] = lipgloss.Width(strings.ToUpper(t.header[i]))
	}
	for _, r := range t.rows {
		for i := 0; i < last && i < len(r); i++ {
			widths[i] = max(widths[i], lipgloss.Width(r[i]))
		}
	}
	used := 0
	for _, w := range widths {
		used += w + 3
	}
	avail := max(width-used, minLastColumn)
	for _, r := range t.rows {
		if len(r) > last && lipgloss.Width(r[last]) > avail {
			r[last] = ansi.Truncate(r[last], avail, "…")
		}
	}
}

// reasonCell says why a module does not run as it should (its status
// description), "-" for one that runs.
func reasonCell(m mgmtclient.Module) string {
	if m.Status == "running" || m.Description == "" {
		return "-"
	}
	return strings.Join(strings.Fields(m.Description), " ") // one line
}
