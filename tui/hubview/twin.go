package hubview

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textarea"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/twin"
	"github.com/outpost-edge/outpost/internal/twinedit"
	"github.com/outpost-edge/outpost/tui/common"
	"github.com/outpost-edge/outpost/tui/components"
)

// HighlightFor is how long keys changed by a live update stay highlighted.
const HighlightFor = 3 * time.Second

// twinMode is what the twin view shows.
type twinMode int

const (
	twinBrowse   twinMode = iota // desired | reported (or tags)
	twinEdit                     // the JSON editor, with validation and the patch preview
	twinConflict                 // base | theirs | yours after a 412
)

// Twin is a module twin, live: desired and reported side by side (tags on
// a tab), keys changed by a live update highlighted, and in-place editing
// of desired properties and tags, sent only with If-Match.
type Twin struct {
	common.Common
	hub            Hub
	device, module string

	tw      *twin.Twin
	doc     map[string]any  // tw as JSON
	changed map[string]bool // paths (desired.x, reported.y, tags.z) lit by the last update
	litGen  int
	tab     int // 0 properties, 1 tags
	meta    bool
	offset  int
	watch   <-chan hubclient.TwinEvent
	down    bool

	tree       bool       // the tree instead of JSON
	collapsed  folds      // tree paths collapsed or expanded (desired.a, reported.list[0])
	cursor     int        // the tree node under the cursor
	cursorPath string     // its path, kept across live updates
	side       int        // side by side (see sideBySide): 0 desired, 1 reported has the cursor
	sidePos    [2]sidePos // where the cursor was on each side when it left

	mode     twinMode
	sess     *twinedit.Session
	editor   textarea.Model
	edit     *twinedit.Edit // the last valid check; nil when invalid
	editErr  error
	preview  bool
	conflict *twinedit.Conflict
	sending  bool
}

// NewTwin returns the view of device/module's twin.
func NewTwin(c common.Common, h Hub, device, module string) *Twin {
	ta := textarea.New()
	ta.ShowLineNumbers = true
	ta.CharLimit = 0
	ta.MaxHeight = 0
	ta.Prompt = ""
	ta.SetStyles(c.Styles.TextArea())
	return &Twin{Common: c, hub: h, device: device, module: module, editor: ta, preview: true}
}

// Title implements common.Titled.
func (v *Twin) Title() string {
	if v.module == "" {
		return v.device + " twin" // a device's own twin
	}
	return v.device + "/" + v.module
}

type twinWatchMsg struct {
	view *Twin
	ch   <-chan hubclient.TwinEvent
	err  error
}

type twinEventMsg struct {
	view *Twin
	ev   hubclient.TwinEvent
	ok   bool
}

type unlightMsg struct {
	view *Twin
	gen  int
}

type sentMsg struct {
	view *Twin
	tw   *twin.Twin
	err  error
}

type editorDoneMsg struct {
	view *Twin
	path string
	err  error
}

// Init implements common.Model: it starts the watch.
func (v *Twin) Init() tea.Cmd {
	ctx, h := v.Ctx, v.hub
	return func() tea.Msg {
		ch, err := h.WatchTwin(ctx, v.device, v.module)
		return twinWatchMsg{view: v, ch: ch, err: err}
	}
}

func (v *Twin) next() tea.Cmd {
	ch := v.watch
	return func() tea.Msg {
		ev, ok := <-ch
		return twinEventMsg{view: v, ev: ev, ok: ok}
	}
}

// Update implements common.Model.
func (v *Twin) Update(msg tea.Msg) (common.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case twinWatchMsg:
		if msg.view != v {
			return v, nil
		}
		if msg.err != nil {
			return v, common.Err(fmt.Errorf("watch twin %s: %w", v.Title(), msg.err), "")
		}
		v.watch = msg.ch
		return v, v.next()
	case twinEventMsg:
		if msg.view != v || !msg.ok {
			return v, nil
		}
		return v, tea.Batch(v.event(msg.ev), v.next())
	case unlightMsg:
		if msg.view == v && msg.gen == v.litGen {
			v.changed = nil
		}
		return v, nil
	case sentMsg:
		if msg.view != v {
			return v, nil
		}
		return v, v.sent(msg.tw, msg.err)
	case editorDoneMsg:
		if msg.view != v {
			return v, nil
		}
		return v, v.editorDone(msg.path, msg.err)
	case tea.PasteMsg:
		if v.mode == twinEdit {
			var cmd tea.Cmd
			v.editor, cmd = v.editor.Update(msg)
			v.check()
			return v, cmd
		}
		return v, nil
	case tea.KeyPressMsg:
		switch v.mode {
		case twinEdit:
			return v, v.editKey(msg)
		case twinConflict:
			return v, v.conflictKey(msg)
		}
		return v, v.browseKey(msg)
	}
	return v, nil
}

// event applies a watch event.
func (v *Twin) event(ev hubclient.TwinEvent) tea.Cmd {
	switch ev.Kind {
	case hubclient.TwinInitial:
		v.setTwin(ev.Twin, false)
		return common.Status(fmt.Sprintf("twin %s: version %d", v.Title(), ev.Twin.Version))
	case hubclient.TwinChanged:
		v.setTwin(ev.Twin, true)
		v.litGen++
		gen := v.litGen
		// No status line: the highlight says it, and the status line keeps
		// what the user did last (a send's result).
		return tea.Tick(HighlightFor, func(time.Time) tea.Msg { return unlightMsg{view: v, gen: gen} })
	case hubclient.LinkDown:
		v.down = true
		return common.Err(fmt.Errorf("the hub does not answer (retrying in %s): %w", ev.Retry.Round(time.Millisecond), ev.Err), "")
	case hubclient.LinkUp:
		v.down = false
		return common.Status("the hub answers again")
	case hubclient.WatchEnded:
		return common.Err(fmt.Errorf("watch twin %s ended: %w", v.Title(), ev.Err), "")
	}
	return nil
}

// setTwin shows tw; with lit, the keys that changed are highlighted.
func (v *Twin) setTwin(tw *twin.Twin, lit bool) {
	b, err := json.Marshal(tw)
	if err != nil {
		return
	}
	var doc map[string]any
	if json.Unmarshal(b, &doc) != nil {
		return
	}
	if lit && v.doc != nil {
		v.changed = changedPaths(sectionsOf(v.doc), sectionsOf(doc))
	}
	v.tw, v.doc = tw, doc
	v.pruneCollapsed()
}

// sectionsOf returns {"desired": …, "reported": …, "tags": …} of a twin document.
func sectionsOf(doc map[string]any) map[string]any {
	props, _ := doc["properties"].(map[string]any)
	return map[string]any{"desired": props["desired"], "reported": props["reported"], "tags": doc["tags"]}
}

// Twin returns the twin shown (nil before the first read).
func (v *Twin) Twin() *twin.Twin { return v.tw }

// Changed returns the paths highlighted now (desired.a, reported.b, tags.c).
func (v *Twin) Changed() map[string]bool { return v.changed }

// Mode says what the view shows: "browse", "edit" or "conflict".
func (v *Twin) Mode() string { return [...]string{"browse", "edit", "conflict"}[v.mode] }

func (v *Twin) browseKey(msg tea.KeyPressMsg) tea.Cmd {
	k := v.KeyMap
	if key.Matches(msg, k.Tree) {
		v.tree = !v.tree
		v.offset = 0
		v.side = sideOf(v.cursorPath)
		return nil
	}
	if key.Matches(msg, k.NextTab) && v.sideBySide() {
		// desired → reported → the tags tab → desired.
		if v.side == 0 {
			v.switchSide(1)
			return nil
		}
		v.switchSide(0)
		v.sidePos[0] = sidePos{v.cursorPath, v.cursor, v.offset}
		v.tab, v.offset = 1, 0
		return nil
	}
	if v.tree && v.treeKey(msg) {
		return nil
	}
	switch {
	case key.Matches(msg, k.Up):
		v.offset = max(v.offset-1, 0)
	case key.Matches(msg, k.Down):
		v.offset++
	case key.Matches(msg, k.PageUp):
		v.offset = max(v.offset-v.Height+3, 0)
	case key.Matches(msg, k.PageDown):
		v.offset += v.Height - 3
	case key.Matches(msg, k.Home):
		v.offset = 0
	case key.Matches(msg, k.End):
		v.offset = 1 << 30
	case key.Matches(msg, k.NextTab):
		v.tab = 1 - v.tab
		v.offset = 0
		if v.sideBySide() { // back from tags: on desired, where the cursor was
			v.side = 0
			v.cursorPath, v.cursor, v.offset = v.sidePos[0].path, v.sidePos[0].cursor, v.sidePos[0].offset
		}
	case key.Matches(msg, k.Metadata):
		v.meta = !v.meta
	case key.Matches(msg, k.Edit):
		if v.tw == nil {
			return nil
		}
		v.startEdit(twinedit.New(v.tw), nil)
		return v.editor.Focus()
	case key.Matches(msg, k.External):
		if v.tw == nil {
			return nil
		}
		return v.external(twinedit.New(v.tw), nil)
	}
	return nil
}

// startEdit opens the editor on sess with doc (sess.Doc when nil).
func (v *Twin) startEdit(sess *twinedit.Session, doc []byte) {
	if doc == nil {
		doc = sess.Doc
	}
	v.mode, v.sess, v.conflict = twinEdit, sess, nil
	v.editor.SetValue(strings.TrimRight(string(doc), "\n"))
	for range v.editor.LineCount() {
		v.editor.CursorUp()
	}
	v.editor.CursorStart()
	v.layoutEditor()
	v.check()
}

// SetEditText replaces the editor's text (as typing would) and checks it.
func (v *Twin) SetEditText(s string) {
	v.editor.SetValue(s)
	v.check()
}

// EditError is the validation error of the text in the editor, if any.
func (v *Twin) EditError() error { return v.editErr }

// Patch is the merge patch the editor's text would send (nil: none).
func (v *Twin) Patch() []byte {
	if v.edit == nil {
		return nil
	}
	return v.edit.Patch
}

// Conflict is the conflict shown, if any.
func (v *Twin) Conflict() *twinedit.Conflict { return v.conflict }

func (v *Twin) check() {
	e, err := v.sess.Check([]byte(v.editor.Value() + "\n"))
	v.edit, v.editErr = e, err
}

func (v *Twin) editKey(msg tea.KeyPressMsg) tea.Cmd {
	k := v.KeyMap
	switch {
	case key.Matches(msg, k.Send):
		return v.send()
	case key.Matches(msg, k.Preview):
		v.preview = !v.preview
		v.layoutEditor()
		return nil
	case msg.Code == tea.KeyEscape:
		v.mode = twinBrowse
		v.editor.Blur()
		return common.Status("edit discarded; nothing was sent")
	}
	var cmd tea.Cmd
	v.editor, cmd = v.editor.Update(msg)
	v.check()
	return cmd
}

// send sends the edit with If-Match.
func (v *Twin) send() tea.Cmd {
	if v.sending {
		return nil
	}
	if v.editErr != nil {
		return common.Err(fmt.Errorf("not sent: %w", v.editErr), "fix the document first: the error names the line and the JSON path")
	}
	if v.edit == nil || v.edit.Patch == nil {
		v.mode = twinBrowse
		return common.Status("no changes, nothing sent")
	}
	v.sending = true
	ctx, h, sess, e := v.Ctx, v.hub, v.sess, v.edit
	return func() tea.Msg {
		tw, err := sess.Send(ctx, h, e)
		return sentMsg{view: v, tw: tw, err: err}
	}
}

func (v *Twin) sent(tw *twin.Twin, err error) tea.Cmd {
	v.sending = false
	var c *twinedit.Conflict
	switch {
	case errors.As(err, &c):
		v.mode, v.conflict = twinConflict, c
		v.editor.Blur()
		return common.Err(errors.New("the twin changed on the hub meanwhile; nothing was sent"), "r re-applies your change on the hub's version, d discards it")
	case err != nil:
		return common.Err(fmt.Errorf("send: %w", err), "")
	}
	v.mode = twinBrowse
	v.editor.Blur()
	if tw != nil && (v.tw == nil || tw.Version >= v.tw.Version) {
		v.setTwin(tw, true)
	}
	return common.Status(fmt.Sprintf("sent: twin %s is at version %d, desired $version %d, etag %s", v.Title(), tw.Version, tw.DesiredVersion(), tw.ETag))
}

func (v *Twin) conflictKey(msg tea.KeyPressMsg) tea.Cmd {
	k := v.KeyMap
	switch {
	case key.Matches(msg, k.Reapply):
		sess, doc, err := v.conflict.Rebase()
		if err != nil {
			return common.Err(fmt.Errorf("re-apply: %w", err), "")
		}
		v.startEdit(sess, doc)
		return tea.Batch(v.editor.Focus(), common.Status(fmt.Sprintf("your change re-applied on version %d: check it, then ctrl+s sends it", sess.Base.Version)))
	case key.Matches(msg, k.Discard), msg.Code == tea.KeyEscape:
		v.mode, v.conflict = twinBrowse, nil
		return common.Status("your change was discarded; nothing was sent")
	}
	return nil
}

// external edits the document in $EDITOR (the program gives it the
// terminal meanwhile).
func (v *Twin) external(sess *twinedit.Session, doc []byte) tea.Cmd {
	if doc == nil {
		doc = sess.Doc
	}
	f, err := os.CreateTemp("", "outpost-twin-*.json")
	if err != nil {
		return common.Err(fmt.Errorf("edit in $EDITOR: %w", err), "")
	}
	path := f.Name()
	_, werr := f.Write(doc)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(path)
		return common.Err(fmt.Errorf("edit in $EDITOR: %w", werr), "")
	}
	v.sess = sess
	return tea.ExecProcess(twinedit.EditorCommand(path), func(err error) tea.Msg {
		return editorDoneMsg{view: v, path: path, err: err}
	})
}

func (v *Twin) editorDone(path string, err error) tea.Cmd {
	defer os.Remove(path)
	if err != nil {
		return common.Err(fmt.Errorf("editor %q: %w; nothing was sent", twinedit.Editor(), err), "")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return common.Err(fmt.Errorf("read back the edit: %w", err), "")
	}
	v.startEdit(v.sess, b)
	return tea.Batch(v.editor.Focus(), common.Status("edited in "+twinedit.Editor()+": check it here, then ctrl+s sends it"))
}

// SetSize implements common.Component.
func (v *Twin) SetSize(w, h int) {
	was := v.sideBySide()
	v.Common.SetSize(w, h)
	if !was && v.sideBySide() { // the cursor's side is focused
		v.side = sideOf(v.cursorPath)
	}
	v.layoutEditor()
}

func (v *Twin) layoutEditor() {
	w := v.Width
	if v.preview {
		w = v.Width * 3 / 5
	}
	v.editor.SetWidth(max(w, 10))
	v.editor.SetHeight(max(v.Height-3, 1))
}

// Capturing implements common.Capturer: the editor takes every key.
func (v *Twin) Capturing() bool { return v.mode == twinEdit }

// ConsumesBack implements common.BackConsumer: Esc leaves the conflict view.
func (v *Twin) ConsumesBack() bool { return v.mode != twinBrowse }

// View implements common.Model.
func (v *Twin) View() string {
	if v.tw == nil {
		return v.Styles.Muted.Render("reading twin " + v.Title() + "…")
	}
	st := v.Styles
	tw := v.tw
	head := fmt.Sprintf("%s  version %d  etag %s", st.Title.Render("twin "+v.Title()), tw.Version, tw.ETag)
	switch v.mode {
	case twinEdit:
		return head + "\n" + v.editView()
	case twinConflict:
		return head + "\n" + v.conflictView()
	}
	tabs := []string{"properties", "tags"}
	for i, t := range tabs {
		if i == v.tab {
			tabs[i] = st.ActiveTab.Render("[" + t + "]")
		} else {
			tabs[i] = st.Tab.Render(" " + t + " ")
		}
	}
	if v.tree {
		return head + "  " + strings.Join(tabs, "") + "\n" + v.treeView()
	}
	var body []string
	if v.tab == 0 {
		w := (v.Width - 1) / 2
		left := v.section("desired", fmt.Sprintf("desired ($version %d)", tw.DesiredVersion()), w)
		right := v.section("reported", fmt.Sprintf("reported ($version %d)", tw.ReportedVersion()), v.Width-w-1)
		for len(left) < len(right) {
			left = append(left, "")
		}
		for len(right) < len(left) {
			right = append(right, "")
		}
		for i := range left {
			body = append(body, components.Fit(left[i], w)+"│"+right[i])
		}
	} else {
		body = v.section("tags", "tags", v.Width)
	}
	// The first line of each side is its title: it stays; the rest scrolls.
	h := max(v.Height-2, 1)
	title, rest := body[0], body[1:]
	maxOff := max(len(rest)-(h-1), 0)
	v.offset = min(v.offset, maxOff)
	end := min(v.offset+h-1, len(rest))
	lines := append([]string{title}, rest[v.offset:end]...)
	return head + "  " + strings.Join(tabs, "") + "\n" + strings.Join(lines, "\n")
}

// section renders one section as lines at most w wide, title first.
func (v *Twin) section(name, title string, w int) []string {
	st := v.Styles
	val := sectionsOf(v.doc)[name]
	if !v.meta {
		val = withoutMeta(val)
	}
	out := []string{st.Title.Render(components.Fit(title, w))}
	for _, l := range jsonLines(val) {
		full := name
		if l.path != "" {
			full = name + "." + l.path
		}
		if l.path != "" && v.changed[full] {
			out = append(out, st.Changed.Render(components.Fit("• "+l.text, w)))
		} else {
			out = append(out, components.Fit("  "+l.text, w))
		}
	}
	return out
}

func (v *Twin) editView() string {
	st := v.Styles
	var status string
	switch {
	case v.editErr != nil:
		status = st.StatusError.Render("✗ " + editErrText(v.editErr))
	case v.edit == nil || v.edit.Patch == nil:
		status = st.Muted.Render("✓ valid · no changes")
	default:
		status = st.HeaderUp.Render("✓ valid") + st.Muted.Render(" · ctrl+s sends it with If-Match "+v.sess.Base.ETag)
	}
	v.editor.SetStyles(st.TextArea()) // the terminal's background may have changed them
	ed := v.editor.View()
	if v.preview {
		pw := v.Width - v.editor.Width() - 3
		pv := []string{st.Title.Render("patch to send")}
		if p := v.Patch(); p != nil {
			var x any
			_ = json.Unmarshal(p, &x)
			for _, l := range jsonLines(x) {
				pv = append(pv, components.Fit(l.text, pw))
			}
		} else {
			pv = append(pv, st.Muted.Render("(none)"))
		}
		ed = lipgloss.JoinHorizontal(lipgloss.Top, ed, " │ ", strings.Join(pv, "\n"))
	}
	return components.Fit(status, v.Width) + "\n" + ed
}

// editErrText says what is wrong: the line, the JSON path and the problem.
func editErrText(err error) string {
	var e *twinedit.Error
	if errors.As(err, &e) && e.Path != "" && !strings.Contains(e.Msg, e.Path) {
		return err.Error() + " (at " + e.Path + ")"
	}
	return err.Error()
}

func (v *Twin) conflictView() string {
	st := v.Styles
	c := v.conflict
	w := (v.Width - 2) / 3
	col := func(title string, doc []byte) []string {
		out := []string{st.Title.Render(components.Fit(title, w))}
		for _, l := range strings.Split(strings.TrimRight(string(doc), "\n"), "\n") {
			out = append(out, components.Fit(l, w))
		}
		return out
	}
	theirs := []byte("(could not be read)")
	theirsTitle := "theirs (the hub's now)"
	if c.Theirs != nil {
		theirs = c.TheirsDoc
		theirsTitle = fmt.Sprintf("theirs (version %d)", c.Theirs.Version)
	}
	cols := [][]string{
		col(fmt.Sprintf("base (version %d)", c.Base.Version), c.BaseDoc),
		col(theirsTitle, theirs),
		col("yours", c.Yours),
	}
	n := 0
	for _, c := range cols {
		n = max(n, len(c))
	}
	var lines []string
	both := "changed on both sides: none"
	if len(c.Both) > 0 {
		both = "changed on both sides (yours would win): " + strings.Join(c.Both, ", ")
	}
	lines = append(lines, st.Conflict.Render(components.Fit(both, v.Width)))
	for i := 0; i < n && i < v.Height-3; i++ {
		row := make([]string, 3)
		for j, c := range cols {
			if i < len(c) {
				row[j] = c[i]
			} else {
				row[j] = strings.Repeat(" ", w)
			}
		}
		lines = append(lines, strings.Join(row, "│"))
	}
	return strings.Join(lines, "\n")
}

// ShortHelp implements help.KeyMap.
func (v *Twin) ShortHelp() []key.Binding {
	k := v.KeyMap
	switch v.mode {
	case twinEdit:
		return []key.Binding{k.Send, k.Preview, key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "discard edit"))}
	case twinConflict:
		return []key.Binding{k.Reapply, k.Discard}
	}
	if v.tree {
		return []key.Binding{k.Tree, k.Toggle, k.ExpandAll, k.CollapseAll, k.Edit, k.NextTab, k.Metadata}
	}
	return []key.Binding{k.Edit, k.External, k.Tree, k.NextTab, k.Metadata, k.Down}
}

// FullHelp implements help.KeyMap.
func (v *Twin) FullHelp() [][]key.Binding {
	k := v.KeyMap
	return [][]key.Binding{
		{k.Up, k.Down, k.PageUp, k.PageDown, k.Home, k.End},
		{k.NextTab, k.Metadata, k.Edit, k.External},
		{k.Tree, k.Toggle, k.Left, k.Right, k.ExpandAll, k.CollapseAll},
		{k.Send, k.Preview, k.Reapply, k.Discard},
	}
}
