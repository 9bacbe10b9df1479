// Package components holds the reusable widgets of outpost's terminal UI:
// a table with a `/` filter, the header that says what the UI is connected
// to, the status/error line, the help bar with `?` full help, and a
// confirmation dialog. Each embeds common.Common and implements
// common.Component.
package components

import (
	"strconv"
	"strings"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/outpost-edge/outpost/tui/common"
)

// Column is a column of a Table.
type Column struct {
	Title  string
	Width  int  // at least this wide (the title's width when 0)
	Grow   bool // takes the width left over (shared between growing columns)
	Status bool // cells start with a status word and are coloured by it
}

// Row is a row of a Table. ID identifies it across updates, so that the
// cursor stays on it when rows change.
type Row struct {
	ID    string
	Cells []string
	// Mark is shown in the first column's place when set: a live update
	// just changed this row.
	Mark bool
}

// Table is a scrolling table that renders only the rows it shows, so that
// 10,000 rows cost no more than 20. `/` filters rows by a substring of any
// cell (case-insensitive); Enter keeps the filter, Esc clears it.
type Table struct {
	common.Common
	cols   []Column
	rows   []Row
	lower  []string // each row's cells, joined and lower-cased, for the filter
	shown  []int    // indices in rows of the rows the filter lets through
	cursor int      // index in shown
	offset int      // first shown row on screen

	filter    textinput.Model
	filtering bool

	// Empty is said when there is no row ("no devices").
	Empty string
}

// NewTable returns a table with these columns.
func NewTable(c common.Common, cols ...Column) *Table {
	ti := textinput.New()
	ti.Prompt = "/"
	ti.SetStyles(c.Styles.TextInput(c.Styles.Filter))
	ti.Placeholder = "filter"
	return &Table{Common: c, cols: cols, filter: ti, Empty: "nothing to show"}
}

// SetRows replaces the rows, keeping the cursor on the row it was on when
// that row is still there.
func (t *Table) SetRows(rows []Row) {
	sel, hadSel := t.Selected()
	t.rows = rows
	t.lower = make([]string, len(rows))
	for i, r := range rows {
		t.lower[i] = strings.ToLower(strings.Join(r.Cells, "\x00"))
	}
	t.refilter()
	if hadSel {
		t.Select(sel.ID)
	}
}

// Select moves the cursor to the row with id, if shown.
func (t *Table) Select(id string) bool {
	for i, ri := range t.shown {
		if t.rows[ri].ID == id {
			t.cursor = i
			t.clamp()
			return true
		}
	}
	return false
}

// Rows returns every row (filtered or not).
func (t *Table) Rows() []Row { return t.rows }

// Selected returns the row under the cursor.
func (t *Table) Selected() (Row, bool) {
	if t.cursor < 0 || t.cursor >= len(t.shown) {
		return Row{}, false
	}
	return t.rows[t.shown[t.cursor]], true
}

// Count returns how many rows the filter lets through, and how many there are.
func (t *Table) Count() (shown, total int) { return len(t.shown), len(t.rows) }

// FilterText is the filter, "" for none.
func (t *Table) FilterText() string { return t.filter.Value() }

// SetFilter sets the filter.
func (t *Table) SetFilter(s string) {
	t.filter.SetValue(s)
	t.refilter()
}

// Capturing reports whether the filter has the keyboard.
func (t *Table) Capturing() bool { return t.filtering }

func (t *Table) refilter() {
	q := strings.ToLower(t.filter.Value())
	t.shown = t.shown[:0]
	for i := range t.rows {
		if q == "" || strings.Contains(t.lower[i], q) {
			t.shown = append(t.shown, i)
		}
	}
	t.clamp()
}

// Init implements common.Model.
func (t *Table) Init() tea.Cmd { return nil }

// SetSize implements common.Component.
func (t *Table) SetSize(w, h int) {
	t.Common.SetSize(w, h)
	t.clamp()
}

// bodyHeight is the number of rows on screen.
func (t *Table) bodyHeight() int {
	h := t.Height - 1 // column titles
	if t.filtering || t.filter.Value() != "" {
		h-- // the filter line
	}
	return max(h, 1)
}

func (t *Table) clamp() {
	if t.cursor >= len(t.shown) {
		t.cursor = len(t.shown) - 1
	}
	if t.cursor < 0 {
		t.cursor = 0
	}
	h := t.bodyHeight()
	if t.cursor < t.offset {
		t.offset = t.cursor
	}
	if t.cursor >= t.offset+h {
		t.offset = t.cursor - h + 1
	}
	if t.offset > max(len(t.shown)-h, 0) {
		t.offset = max(len(t.shown)-h, 0)
	}
	if t.offset < 0 {
		t.offset = 0
	}
}

// Update implements common.Model: cursor keys and the filter.
func (t *Table) Update(msg tea.Msg) (common.Model, tea.Cmd) {
	if p, ok := msg.(tea.PasteMsg); ok && t.filtering {
		var cmd tea.Cmd
		t.filter, cmd = t.filter.Update(p)
		t.refilter()
		return t, cmd
	}
	km, ok := msg.(tea.KeyPressMsg)
	if !ok {
		return t, nil
	}
	k := t.KeyMap
	if t.filtering {
		switch km.Code {
		case tea.KeyEnter:
			t.filtering = false
			t.filter.Blur()
			return t, nil
		case tea.KeyEscape:
			t.filtering = false
			t.filter.Blur()
			t.SetFilter("")
			return t, nil
		case tea.KeyUp, tea.KeyDown:
			// move while filtering
		default:
			var cmd tea.Cmd
			t.filter, cmd = t.filter.Update(msg)
			t.refilter()
			return t, cmd
		}
	}
	switch {
	case key.Matches(km, k.Filter):
		t.filtering = true
		t.clamp()
		return t, t.filter.Focus()
	case key.Matches(km, k.Back) && t.filter.Value() != "":
		t.SetFilter("")
	case key.Matches(km, k.Up):
		t.cursor--
	case key.Matches(km, k.Down):
		t.cursor++
	case key.Matches(km, k.PageUp):
		t.cursor -= t.bodyHeight()
	case key.Matches(km, k.PageDown):
		t.cursor += t.bodyHeight()
	case key.Matches(km, k.Home):
		t.cursor = 0
	case key.Matches(km, k.End):
		t.cursor = len(t.shown) - 1
	}
	t.clamp()
	return t, nil
}

// HasFilter reports whether Esc would clear a filter (rather than go back).
func (t *Table) HasFilter() bool { return t.filtering || t.filter.Value() != "" }

// gutter is the width of the cursor's column ("▸ " on the selected row,
// "• " on a row a live update just changed): colour is not needed to see
// either.
const gutter = 2

// widths fits the columns into the table's width.
func (t *Table) widths() []int {
	ws := make([]int, len(t.cols))
	used, grow := 0, 0
	for i, c := range t.cols {
		ws[i] = max(c.Width, lipgloss.Width(c.Title))
		used += ws[i] + 1
		if c.Grow {
			grow++
		}
	}
	extra := t.Width - gutter - used
	if extra > 0 && grow > 0 {
		for i, c := range t.cols {
			if c.Grow {
				ws[i] += extra / grow
			}
		}
	}
	return ws
}

// View implements common.Model.
func (t *Table) View() string {
	var b strings.Builder
	st := t.Styles
	ws := t.widths()
	titles := make([]string, len(t.cols))
	for i, c := range t.cols {
		titles[i] = c.Title
	}
	b.WriteString("  " + st.TableHeader.Render(fit(t.line(titles, ws, nil), t.Width-2)))
	b.WriteByte('\n')
	h := t.bodyHeight()
	if len(t.shown) == 0 {
		msg := t.Empty
		if t.filter.Value() != "" {
			msg = "no row matches " + strconv.Quote(t.filter.Value())
		}
		b.WriteString(st.Muted.Render(fit("  "+msg, t.Width)))
		b.WriteByte('\n')
		h--
	}
	for i := t.offset; i < len(t.shown) && i < t.offset+h; i++ {
		r := t.rows[t.shown[i]]
		switch {
		case i == t.cursor:
			b.WriteString(st.Selected.Render(fit("▸ "+t.line(r.Cells, ws, nil), t.Width)))
		case r.Mark:
			b.WriteString(st.Changed.Render(fit("• "+t.line(r.Cells, ws, nil), t.Width)))
		default:
			b.WriteString("  " + t.line(r.Cells, ws, st))
		}
		b.WriteByte('\n')
	}
	if t.filtering || t.filter.Value() != "" {
		shown, total := t.Count()
		t.filter.SetWidth(max(t.Width-20, 10))
		t.filter.SetStyles(st.TextInput(st.Filter)) // the terminal's background may have changed them
		line := t.filter.View()
		if !t.filtering {
			line = st.Filter.Render("/" + t.filter.Value())
		}
		b.WriteString(fit(line+st.Muted.Render("  "+strconv.Itoa(shown)+" of "+strconv.Itoa(total)), t.Width))
		b.WriteByte('\n')
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// line lays out cells in the column widths; with st, status cells are
// coloured.
func (t *Table) line(cells []string, ws []int, st *common.Styles) string {
	var b strings.Builder
	for i, w := range ws {
		cell := ""
		if i < len(cells) {
			cell = cells[i]
		}
		cell = fit(cell, w)
		if st != nil && t.cols[i].Status {
			cell = st.Status(cell)
		}
		b.WriteString(cell)
		if i < len(ws)-1 {
			b.WriteByte(' ')
		}
	}
	return b.String()
}

// ShortHelp implements help.KeyMap.
func (t *Table) ShortHelp() []key.Binding {
	return []key.Binding{t.KeyMap.Up, t.KeyMap.Down, t.KeyMap.Filter}
}

// FullHelp implements help.KeyMap.
func (t *Table) FullHelp() [][]key.Binding {
	return [][]key.Binding{t.KeyMap.Moves(), {t.KeyMap.Filter}}
}

// fit truncates s to w cells (with …) or pads it with spaces to w.
func fit(s string, w int) string {
	if w <= 0 {
		return ""
	}
	sw := ansi.StringWidth(s)
	if sw > w {
		return ansi.Truncate(s, w, "…")
	}
	return s + strings.Repeat(" ", w-sw)
}

// Fit truncates s to w cells (with …) or pads it with spaces to w; for views.
func Fit(s string, w int) string { return fit(s, w) }
