package local

import (
	"context"
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/tui/common"
	"github.com/outpost-edge/outpost/tui/components"
)

// Bounds of the log view: the lines asked for at the start, and the most
// kept (the oldest go first).
const (
	logTail     = 1000
	maxLogLines = 10000
	logBatch    = 512 // the most lines taken in at once
)

// Messages of the log view.
type (
	logStartedMsg struct {
		id int
		ch <-chan logItem
	}
	logLinesMsg struct {
		id    int
		items []logItem
		ch    <-chan logItem
		ended bool
	}
)

// logItem is what the follow goroutine hands the view: an event of the
// module's logs, or the error that ended the following.
type logItem struct {
	ev  mgmtclient.FollowEvent
	err error
}

// logLine is a line of the view: a line the module logged, or a marker
// between its instances ("tempsensor restarted …").
type logLine struct {
	text   string
	marker bool
}

// Logs is one module's logs: followed as they come across the module's
// instances (a restart or re-creation shows as a marker line, and the next
// instance's lines follow), scrolled, searched with /.
type Logs struct {
	common.Common
	mc     Client
	module string
	id     int
	cancel context.CancelFunc

	lines  []logLine
	top    int  // first line on screen
	follow bool // keep the last line on screen
	gone   mgmtclient.FollowKind
	goneAt time.Time // when the last instance exited, or the daemon was lost; zero while one runs
	ended  bool      // following ended (the daemon refused it)
	failed string

	input     textinput.Model
	searching bool
	query     string // the search, lower-cased; "" for none
	current   int    // the line of the current match; -1 for none
}

// NewLogs returns the log view of module.
func NewLogs(c common.Common, mc Client, module string) *Logs {
	ti := textinput.New()
	ti.Prompt = "/"
	ti.SetStyles(c.Styles.TextInput(c.Styles.Filter))
	ti.Placeholder = "search"
	return &Logs{Common: c, mc: mc, module: module, id: newID(), follow: true, input: ti, current: -1}
}

// Title implements common.Titled.
func (l *Logs) Title() string { return "logs " + l.module }

// Init implements common.Model: it starts following the module's logs.
func (l *Logs) Init() tea.Cmd {
	ctx, cancel := context.WithCancel(l.Ctx)
	l.cancel = cancel
	mc, module, id := l.mc, l.module, l.id
	return func() tea.Msg {
		ch := make(chan logItem, logBatch)
		go func() {
			defer close(ch)
			err := mc.Follow(ctx, mgmtclient.FollowOptions{Modules: []string{module}, Tail: logTail}, func(ev mgmtclient.FollowEvent) {
				select {
				case ch <- logItem{ev: ev}:
				case <-ctx.Done():
				}
			})
			if err != nil && ctx.Err() == nil {
				select {
				case ch <- logItem{err: err}:
				case <-ctx.Done():
				}
			}
		}()
		return logStartedMsg{id: id, ch: ch}
	}
}

// more waits for items on ch and takes those already there with them.
func (l *Logs) more(ch <-chan logItem) tea.Cmd {
	id := l.id
	return func() tea.Msg {
		it, ok := <-ch
		if !ok {
			return logLinesMsg{id: id, ended: true}
		}
		items := []logItem{it}
		for len(items) < logBatch {
			select {
			case it, ok := <-ch:
				if !ok {
					return logLinesMsg{id: id, items: items, ended: true}
				}
				items = append(items, it)
			default:
				return logLinesMsg{id: id, items: items, ch: ch}
			}
		}
		return logLinesMsg{id: id, items: items, ch: ch}
	}
}

// Update implements common.Model.
func (l *Logs) Update(msg tea.Msg) (common.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case logStartedMsg:
		if msg.id != l.id {
			return l, nil
		}
		return l, l.more(msg.ch)
	case logLinesMsg:
		if msg.id != l.id {
			return l, nil
		}
		cmd := l.take(msg.items)
		if msg.ended {
			l.ended = true
			return l, cmd
		}
		return l, tea.Batch(cmd, l.more(msg.ch))
	case tea.KeyPressMsg:
		return l, l.key(msg)
	case tea.PasteMsg:
		if l.searching {
			var cmd tea.Cmd
			l.input, cmd = l.input.Update(msg)
			return l, cmd
		}
	}
	return l, nil
}

// take adds the lines and markers of items to the view; an error (the
// daemon refused to follow the module) is shown in the status line.
func (l *Logs) take(items []logItem) tea.Cmd {
	lines := make([]logLine, 0, len(items))
	var cmd tea.Cmd
	for _, it := range items {
		if it.err != nil {
			l.failed = it.err.Error()
			cmd = common.Err(fmt.Errorf("logs of %s: %w", l.module, it.err), "")
			continue
		}
		ev := it.ev
		if ev.Kind == mgmtclient.FollowLine {
			lines = append(lines, logLine{text: ev.Line})
			continue
		}
		lines = append(lines, logLine{text: "--- " + ev.Marker() + " ---", marker: true})
		switch ev.Kind {
		case mgmtclient.FollowExited, mgmtclient.FollowRemoved, mgmtclient.FollowLost:
			l.gone, l.goneAt = ev.Kind, ev.Time
		default: // an instance runs again, or the daemon answers again
			l.goneAt = time.Time{}
		}
	}
	l.add(lines)
	return cmd
}

// add appends lines, dropping the oldest past maxLogLines.
func (l *Logs) add(lines []logLine) {
	l.lines = append(l.lines, lines...)
	if drop := len(l.lines) - maxLogLines; drop > 0 {
		l.lines = append([]logLine(nil), l.lines[drop:]...)
		l.top = max(l.top-drop, 0)
		if l.current >= 0 {
			l.current -= drop
			if l.current < 0 {
				l.current = -1
			}
		}
	}
	l.clamp()
}

func (l *Logs) bodyHeight() int {
	h := l.Height - 1 // the title line
	if l.searching {
		h-- // the search line
	}
	return max(h, 1)
}

func (l *Logs) maxTop() int { return max(len(l.lines)-l.bodyHeight(), 0) }

func (l *Logs) clamp() {
	if l.follow {
		l.top = l.maxTop()
	}
	l.top = min(max(l.top, 0), l.maxTop())
}

func (l *Logs) key(msg tea.KeyPressMsg) tea.Cmd {
	k := l.KeyMap
	if l.searching {
		switch msg.Code {
		case tea.KeyEnter:
			l.searching = false
			l.input.Blur()
			l.query = strings.ToLower(l.input.Value())
			l.current = -1
			if l.query != "" {
				l.find(l.top, 1)
			}
			l.clamp()
			return nil
		case tea.KeyEscape:
			l.searching = false
			l.input.Blur()
			l.clamp()
			return nil
		}
		var cmd tea.Cmd
		l.input, cmd = l.input.Update(msg)
		return cmd
	}
	switch {
	case key.Matches(msg, k.Back):
		if l.query != "" {
			l.query, l.current = "", -1
			return nil
		}
		if l.cancel != nil {
			l.cancel()
		}
		return common.Pop()
	case key.Matches(msg, k.Filter):
		l.searching = true
		l.input.SetValue("")
		l.clamp()
		return l.input.Focus()
	case key.Matches(msg, k.SearchNext) && l.query != "":
		l.find(l.current+1, 1)
	case key.Matches(msg, k.SearchPrev) && l.query != "":
		l.find(l.current-1, -1)
	case key.Matches(msg, k.Follow):
		l.follow = !l.follow
	case key.Matches(msg, k.Restart):
		return common.Push(confirmRestart(l.Common, l.mc, l.module))
	case key.Matches(msg, k.Up):
		l.scroll(-1)
	case key.Matches(msg, k.Down):
		l.scroll(1)
	case key.Matches(msg, k.PageUp):
		l.scroll(-l.bodyHeight())
	case key.Matches(msg, k.PageDown):
		l.scroll(l.bodyHeight())
	case key.Matches(msg, k.Home):
		l.follow = false
		l.top = 0
	case key.Matches(msg, k.End):
		l.follow = true
	}
	l.clamp()
	return nil
}

// scroll moves by n lines; moving up stops following, reaching the end
// follows again.
func (l *Logs) scroll(n int) {
	l.top += n
	l.follow = l.top >= l.maxTop()
}

// find moves the current match to the first line matching the query from
// line from on, in direction dir (1 down, -1 up), wrapping around, and
// scrolls to it.
func (l *Logs) find(from, dir int) {
	n := len(l.lines)
	if n == 0 {
		return
	}
	for i := range n {
		j := ((from+dir*i)%n + n) % n
		if strings.Contains(strings.ToLower(l.lines[j].text), l.query) {
			l.current = j
			l.follow = false
			if j < l.top || j >= l.top+l.bodyHeight() {
				l.top = j - l.bodyHeight()/2
			}
			return
		}
	}
	l.current = -1
}

// matches counts the lines matching the query, and the rank of the current.
func (l *Logs) matches() (rank, total int) {
	for i, s := range l.lines {
		if strings.Contains(strings.ToLower(s.text), l.query) {
			total++
			if i <= l.current {
				rank = total
			}
		}
	}
	return rank, total
}

// Capturing implements common.Capturer.
func (l *Logs) Capturing() bool { return l.searching }

// ConsumesBack implements common.BackConsumer: Esc clears a search, or
// closes the stream and goes back.
func (l *Logs) ConsumesBack() bool { return true }

// SetSize implements common.Component.
func (l *Logs) SetSize(w, h int) {
	l.Common.SetSize(w, h)
	l.clamp()
}

// View implements common.Model.
func (l *Logs) View() string {
	st := l.Styles
	state := "following"
	switch {
	case l.failed != "":
		state = "not available"
	case l.ended:
		state = "ended"
	case !l.goneAt.IsZero() && l.gone == mgmtclient.FollowLost:
		state = "the daemon does not answer; trying again"
	case !l.goneAt.IsZero() && l.gone == mgmtclient.FollowRemoved:
		state = "removed from the deployment"
	case !l.goneAt.IsZero():
		state = "exited " + l.goneAt.Local().Format("15:04:05") + "; the next instance's lines follow"
	case !l.follow:
		state = "paused (G or f follows)"
	}
	title := st.Title.Render("logs of "+l.module) + st.Muted.Render(fmt.Sprintf(" · %s · %d lines", state, len(l.lines)))
	if l.query != "" {
		rank, total := l.matches()
		title += st.Muted.Render(" · ") + st.Filter.Render("/"+l.query) + st.Muted.Render(fmt.Sprintf(" %d of %d", rank, total))
	}
	out := []string{components.Fit(title, l.Width)}
	h := l.bodyHeight()
	if len(l.lines) == 0 {
		msg := "no log lines yet"
		if l.failed != "" {
			msg = l.failed
		}
		out = append(out, st.Muted.Render(components.Fit("  "+msg, l.Width)))
	}
	for i := l.top; i < len(l.lines) && i < l.top+h; i++ {
		s := components.Fit(ansi.Strip(l.lines[i].text), l.Width)
		switch {
		case i == l.current:
			s = st.Selected.Render(s)
		case l.query != "" && strings.Contains(strings.ToLower(l.lines[i].text), l.query):
			s = st.Changed.Render(s)
		case l.lines[i].marker:
			s = st.Muted.Render(s)
		}
		out = append(out, s)
	}
	if l.searching {
		l.input.SetStyles(st.TextInput(st.Filter)) // the terminal's background may have changed them
		out = append(out, l.input.View())
	}
	return strings.Join(out, "\n")
}

// ShortHelp implements help.KeyMap.
func (l *Logs) ShortHelp() []key.Binding {
	k := l.KeyMap
	return []key.Binding{k.Up, k.Down, k.Follow, search(k), k.SearchNext, k.Restart}
}

// search is the filter key, which searches in the logs.
func search(k *common.KeyMap) key.Binding {
	return key.NewBinding(key.WithKeys(k.Filter.Keys()...), key.WithHelp(k.Filter.Help().Key, "search"))
}

// FullHelp implements help.KeyMap.
func (l *Logs) FullHelp() [][]key.Binding {
	k := l.KeyMap
	return [][]key.Binding{k.Moves(), {k.Follow, search(k), k.SearchNext, k.SearchPrev, k.Restart}}
}
