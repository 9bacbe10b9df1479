package local

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/tui/common"
	"github.com/outpost-edge/outpost/tui/components"
)

// rewatchAfter is how long the view waits before it opens the event stream
// again when the daemon ended it (a restart of the daemon, or this client
// fell behind).
const rewatchAfter = 2 * time.Second

// wideFrom is the width from which the module table shows the image too.
const wideFrom = 110

// Messages of the device view. Each carries the view's id, so that two
// device views (there is one per program, but tests make many) never take
// each other's.
type (
	watchMsg struct {
		id  int
		ch  <-chan mgmtclient.Event
		err error
	}
	eventMsg struct {
		id int
		ev mgmtclient.Event
		ch <-chan mgmtclient.Event
	}
	watchEndedMsg struct{ id int }
	rewatchMsg    struct{ id int }
	statusMsg     struct {
		id  int
		st  *mgmtclient.Status
		err error
	}
	// tickMsg redraws the ages ("2m ago") once a second; no data is read.
	tickMsg struct{ id int }
	// restartedMsg is the answer to a restart the user confirmed.
	restartedMsg struct {
		module string
		err    error
	}
)

var nextID int

func newID() int { nextID++; return nextID }

// Device is the device-local view: link, outbox, message queue, cached
// twins, leaf devices, modules.
type Device struct {
	common.Common
	mc   Client
	id   int
	open string // a module whose logs to open once it is known

	// What the daemon said, from its events (link, outbox, modules) and its
	// status (the rest).
	status   *mgmtclient.Status
	link     mgmtclient.Link
	haveLink bool
	outbox   mgmtclient.Outbox
	msgs     *mgmtclient.MessageQueue // nil: the daemon routes no messages
	modules  map[string]mgmtclient.Module
	drain    drainMeter
	loaded   bool // the first snapshot came

	fetching, refetch bool // a GET /status is on its way; another is due after it
	watchErr          string

	table *components.Table
	wide  bool
}

// NewDevice returns the device view over mc; module, when not "", is opened
// (its logs) as soon as the daemon lists it.
func NewDevice(c common.Common, mc Client, module string) *Device {
	d := &Device{Common: c, mc: mc, id: newID(), open: module, modules: map[string]mgmtclient.Module{}}
	d.setColumns(false)
	return d
}

func (d *Device) setColumns(wide bool) {
	cols := []components.Column{
		{Title: "MODULE", Width: 12, Grow: true},
		{Title: "STATUS", Width: 9, Status: true},
		{Title: "RESTARTS", Width: 8},
		{Title: "UPTIME", Width: 7},
		{Title: "TWIN D/R", Width: 10},
		{Title: "HUB D/R", Width: 7},
		{Title: "BROKER", Width: 12, Status: true},
		{Title: "HEALTH", Width: 6, Status: true},
	}
	if wide {
		cols = append(cols, components.Column{Title: "IMAGE", Width: 24, Grow: true})
	}
	var filter string
	if d.table != nil {
		filter = d.table.FilterText()
	}
	d.table = components.NewTable(d.Common, cols...)
	d.table.Empty = "no modules: the device has no deployment yet (outpost deploy, on the hub's side)"
	d.table.SetFilter(filter)
	d.wide = wide
}

// Title implements common.Titled.
func (d *Device) Title() string {
	if d.status != nil && d.status.DeviceID != "" {
		return "device " + d.status.DeviceID
	}
	return "device"
}

// Init implements common.Model: the event stream, the status, the clock.
func (d *Device) Init() tea.Cmd {
	d.fetching = true
	return tea.Batch(d.watch(), d.fetchStatus(), d.tick())
}

func (d *Device) watch() tea.Cmd {
	ctx, mc, id := d.Ctx, d.mc, d.id
	return func() tea.Msg {
		ch, err := mc.Watch(ctx)
		return watchMsg{id: id, ch: ch, err: err}
	}
}

// next reads the next event of ch.
func (d *Device) next(ch <-chan mgmtclient.Event) tea.Cmd {
	id := d.id
	return func() tea.Msg {
		ev, ok := <-ch
		if !ok {
			return watchEndedMsg{id: id}
		}
		return eventMsg{id: id, ev: ev, ch: ch}
	}
}

func (d *Device) fetchStatus() tea.Cmd {
	ctx, mc, id := d.Ctx, d.mc, d.id
	return func() tea.Msg {
		st, err := mc.Status(ctx)
		return statusMsg{id: id, st: st, err: err}
	}
}

// refresh reads the status again, once the read on its way is back.
func (d *Device) refresh() tea.Cmd {
	if d.fetching {
		d.refetch = true
		return nil
	}
	d.fetching = true
	return d.fetchStatus()
}

func (d *Device) tick() tea.Cmd {
	id := d.id
	return tea.Tick(time.Second, func(time.Time) tea.Msg { return tickMsg{id: id} })
}

func (d *Device) rewatch() tea.Cmd {
	id := d.id
	return tea.Tick(rewatchAfter, func(time.Time) tea.Msg { return rewatchMsg{id: id} })
}

// Update implements common.Model.
func (d *Device) Update(msg tea.Msg) (common.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case watchMsg:
		if msg.id != d.id {
			return d, nil
		}
		if msg.err != nil {
			d.watchErr = msg.err.Error()
			return d, tea.Batch(common.Err(fmt.Errorf("follow the daemon's events: %w", msg.err), ""), d.rewatch())
		}
		d.watchErr = ""
		return d, d.next(msg.ch)
	case eventMsg:
		if msg.id != d.id {
			return d, nil
		}
		cmd := d.apply(msg.ev)
		if msg.ev.Type == mgmtclient.EventError {
			return d, tea.Batch(cmd, d.rewatch())
		}
		return d, tea.Batch(cmd, d.next(msg.ch))
	case watchEndedMsg:
		if msg.id != d.id {
			return d, nil
		}
		return d, d.rewatch()
	case rewatchMsg:
		if msg.id != d.id {
			return d, nil
		}
		return d, tea.Batch(d.watch(), d.refresh())
	case statusMsg:
		if msg.id != d.id {
			return d, nil
		}
		d.fetching = false
		var cmd tea.Cmd
		if msg.err != nil {
			cmd = common.Err(fmt.Errorf("read the daemon's status: %w", msg.err), "")
		} else {
			d.status = msg.st
			if !d.haveLink {
				d.link = mgmtclient.Link{Connected: msg.st.Connected, Since: msg.st.Since, LastSync: msg.st.LastSync,
					LastError: msg.st.LastError, LastErrorAt: msg.st.LastErrorAt}
				d.outbox = msg.st.Outbox
			}
			if d.msgs == nil {
				d.msgs = msg.st.Messages
			}
			d.rows()
			cmd = tea.Batch(d.conn(), d.openFirst())
		}
		if d.refetch {
			d.refetch = false
			d.fetching = true
			cmd = tea.Batch(cmd, d.fetchStatus())
		}
		return d, cmd
	case tickMsg:
		if msg.id != d.id {
			return d, nil
		}
		d.rows() // uptimes
		return d, tea.Batch(d.tick(), d.conn())
	case restartedMsg:
		if msg.err != nil {
			return d, common.Err(fmt.Errorf("restart %s: %w", msg.module, msg.err), "")
		}
		return d, common.Status("restarted " + msg.module)
	case tea.KeyPressMsg:
		return d, d.key(msg)
	case tea.PasteMsg: // into the filter
		_, cmd := d.table.Update(msg)
		return d, cmd
	}
	return d, nil
}

func (d *Device) key(msg tea.KeyPressMsg) tea.Cmd {
	k := d.KeyMap
	if !d.table.Capturing() {
		row, ok := d.table.Selected()
		switch {
		case key.Matches(msg, k.Select), key.Matches(msg, k.Logs):
			if ok {
				return common.Push(NewLogs(d.Common, d.mc, row.ID))
			}
			return nil
		case key.Matches(msg, k.Restart):
			if ok {
				return common.Push(confirmRestart(d.Common, d.mc, row.ID))
			}
			return nil
		}
	}
	_, cmd := d.table.Update(msg)
	return cmd
}

// apply takes an event of the daemon in.
func (d *Device) apply(ev mgmtclient.Event) tea.Cmd {
	var cmds []tea.Cmd
	switch ev.Type {
	case mgmtclient.EventSnapshot:
		d.modules = map[string]mgmtclient.Module{}
		for _, m := range ev.Modules {
			d.modules[m.Name] = m
		}
		if ev.Link != nil {
			d.setLink(*ev.Link, ev.Time)
		}
		if ev.Outbox != nil {
			d.setOutbox(*ev.Outbox, ev.Time)
		}
		d.msgs = ev.Messages
		d.loaded = true
		cmds = append(cmds, d.refresh(), d.openFirst())
	case mgmtclient.EventModule:
		if ev.Module != nil {
			d.modules[ev.Module.Name] = *ev.Module
		}
	case mgmtclient.EventModuleRemoved:
		delete(d.modules, ev.Name)
	case mgmtclient.EventLink:
		if ev.Link != nil {
			d.setLink(*ev.Link, ev.Time)
		}
		cmds = append(cmds, d.refresh())
	case mgmtclient.EventOutbox:
		if ev.Outbox != nil {
			d.setOutbox(*ev.Outbox, ev.Time)
		}
		cmds = append(cmds, d.refresh()) // the twins' reported versions moved
	case mgmtclient.EventMessages:
		d.msgs = ev.Messages
	case mgmtclient.EventError:
		cmds = append(cmds, common.Err(fmt.Errorf("the daemon's events: %s", ev.Error), "the view follows them again in a moment"))
	}
	d.rows()
	cmds = append(cmds, d.conn())
	return tea.Batch(cmds...)
}

// openFirst opens the logs of the module the user named, once the daemon
// said which modules it runs and what the device is: DEVICE (this device's
// own id) or DEVICE/MODULE from `outpost tui` are fine too.
func (d *Device) openFirst() tea.Cmd {
	if d.open == "" || !d.loaded || d.status == nil {
		return nil
	}
	name := d.open
	d.open = ""
	if _, ok := d.modules[name]; ok {
		return common.Push(NewLogs(d.Common, d.mc, name))
	}
	if name == d.status.DeviceID {
		return nil
	}
	return common.Err(fmt.Errorf("no module %s on device %s", name, d.status.DeviceID), "the modules it runs are in the list")
}

func (d *Device) setLink(l mgmtclient.Link, t time.Time) {
	if l.Connected && (!d.haveLink || !d.link.Connected) {
		d.drain.linkUp(l.Since)
	}
	d.link, d.haveLink = l, true
	_ = t
}

func (d *Device) setOutbox(o mgmtclient.Outbox, t time.Time) {
	d.outbox = o
	d.drain.add(o.Patches, t)
}

// conn tells the header about the link.
func (d *Device) conn() tea.Cmd {
	if !d.haveLink && d.status == nil {
		return nil
	}
	target := "device socket " + d.mc.Socket()
	if d.status != nil && d.status.DeviceID != "" {
		target = "device " + d.status.DeviceID + " (" + d.mc.Socket() + ")"
	}
	note := "since " + clock(d.link.Since)
	m := common.ConnMsg{Target: target, Up: d.link.Connected, Note: note}
	return func() tea.Msg { return m }
}

// rows rebuilds the module table.
func (d *Device) rows() {
	names := make([]string, 0, len(d.modules))
	for n := range d.modules {
		names = append(names, n)
	}
	sort.Strings(names)
	now := d.Now()
	twins := map[string]mgmtclient.TwinVersions{}
	broker := map[string]mgmtclient.BrokerModule{}
	if d.status != nil {
		for _, tv := range d.status.Twins {
			twins[tv.ModuleID] = tv
		}
		for _, b := range d.status.Broker.Modules {
			broker[b.ModuleID] = b
		}
	}
	rows := make([]components.Row, 0, len(names))
	for _, n := range names {
		m := d.modules[n]
		uptime := "-"
		if m.Status == "running" && !m.StartedAt.IsZero() {
			uptime = span(now.Sub(m.StartedAt))
		}
		tw, hub := "-", "—"
		if v, ok := twins[n]; ok {
			tw, hub = cachedVersions(v), hubVersions(v)
		}
		br := "-"
		if b, ok := broker[n]; ok {
			br = "disconnected"
			if b.Connected {
				br = "connected"
			}
		}
		health := "-"
		if h := m.LastHealthCheck; h != nil {
			health = "failed"
			if h.OK {
				health = "ok"
			}
		}
		cells := []string{n, m.Status, fmt.Sprint(m.Restarts), uptime, tw, hub, br, health}
		if d.wide {
			cells = append(cells, image(m))
		}
		rows = append(rows, components.Row{ID: n, Cells: cells})
	}
	d.table.SetRows(rows)
}

// image is a module's image, with the start of its digest.
func image(m mgmtclient.Module) string {
	if m.ImageDigest == "" {
		return m.Image
	}
	dg := strings.TrimPrefix(m.ImageDigest, "sha256:")
	if len(dg) > 12 {
		dg = dg[:12]
	}
	return m.Image + " @" + dg
}

// Capturing implements common.Capturer.
func (d *Device) Capturing() bool { return d.table.Capturing() }

// ConsumesBack implements common.BackConsumer.
func (d *Device) ConsumesBack() bool { return d.table.HasFilter() }

// SetSize implements common.Component.
func (d *Device) SetSize(w, h int) {
	d.Common.SetSize(w, h)
	if wide := w >= wideFrom; wide != d.wide {
		d.setColumns(wide)
		d.rows()
	}
	d.layout()
}

func (d *Device) layout() {
	d.table.SetSize(d.Width, max(d.Height-len(d.panel())-1-detailLines, 2))
}

// detailLines is the most lines the selected module's particulars take.
const detailLines = 3

// panel is the lines above the table: the device, link, outbox, message
// queue, twins and leaf devices.
func (d *Device) panel() []string {
	st := d.Styles
	now := d.Now()
	label := func(s string) string { return st.Title.Render(fmt.Sprintf("%-7s", s)) }
	var lines []string

	dev := "?"
	if d.status != nil {
		dev = d.status.DeviceID
		if d.status.HubHost != "" {
			dev += st.Muted.Render(" · hub ") + d.status.HubHost
		}
		dev += st.Muted.Render(" · runtime ") + d.status.Runtime
	}
	lines = append(lines, label("Device")+" "+dev)

	if !d.loaded && d.status == nil {
		if d.watchErr != "" {
			return append(lines, label("Link")+" "+st.Muted.Render("unknown: the daemon does not answer"))
		}
		return append(lines, label("Link")+" "+st.Muted.Render("asking the daemon…"))
	}
	l := d.link
	var link string
	if l.Connected {
		link = st.HeaderUp.Render("● connected") + " since " + at(l.Since, now)
	} else {
		link = st.HeaderDown.Render("○ offline") + " since " + at(l.Since, now)
	}
	link += st.Muted.Render(" · last sync ") + ago(l.LastSync, now)
	lines = append(lines, label("Link")+" "+link)
	if l.LastError != "" {
		lines = append(lines, wrapped(label("")+" ", st.Muted.Render("last error "+clock(l.LastErrorAt)+": ")+l.LastError, d.Width, 2)...)
	}

	o := d.outbox
	ob := "empty"
	if o.Patches > 0 {
		ob = plural(o.Patches, "patch", "patches") + st.Muted.Render(" · ") + size(o.Bytes) +
			st.Muted.Render(" · oldest ") + ago(o.Oldest, now)
	}
	switch r, ok := d.drain.rate(); {
	case o.Patches > 0 && !l.Connected:
		ob += st.Muted.Render(" · held until the hub is back")
	case o.Patches > 0 && ok:
		ob += st.Muted.Render(" · ") + fmt.Sprintf("draining %.0f/s, ~%s left", r, span(time.Duration(math.Ceil(float64(o.Patches)/r))*time.Second))
	case o.Patches > 0:
		ob += st.Muted.Render(" · sending")
	case d.drain.finished && d.drain.drained > 0:
		ob += st.Muted.Render(" · last drained ") + plural(d.drain.drained, "patch", "patches") + " in " + d.drain.took.Round(time.Millisecond).String()
	}
	lines = append(lines, label("Outbox")+" "+ob)
	if q := d.msgs; q != nil {
		up := d.queue("upstream", q.Upstream, now)
		if q.Upstream.Count > 0 && !l.Connected {
			up += st.Muted.Render(" · held until the hub is back")
		}
		line := up + st.Muted.Render(" | ") + d.queue("inputs", q.Inputs, now)
		if n := q.Upstream.Refused; n > 0 { // shared by both parts
			line += st.Muted.Render(" · ") + st.HeaderDown.Render(plural(int(n), "message", "messages")+" refused: queue full")
		}
		lines = append(lines, wrapped(label("Msgs")+" ", line, d.Width, 2)...)
		if q.RoutesError != "" {
			lines = append(lines, wrapped(label("")+" ", st.HeaderDown.Render("routes: ")+q.RoutesError, d.Width, 2)...)
		}
	}

	if d.status != nil {
		var sys []string
		for _, tv := range d.status.Twins {
			if _, isModule := d.modules[tv.ModuleID]; !isModule {
				sys = append(sys, tv.ModuleID+" "+cachedVersions(tv)+st.Muted.Render(" hub ")+hubVersions(tv))
			}
		}
		if len(sys) > 0 {
			lines = append(lines, wrapped(label("Twins")+" ", strings.Join(sys, st.Muted.Render(" · ")), d.Width, 2)...)
			lines = append(lines, wrapped(label("")+" ", d.twinsLegend(now), d.Width, 2)...)
		} else {
			lines = append(lines, wrapped(label("Twins")+" ", d.twinsLegend(now), d.Width, 2)...)
		}
		if kids := d.status.Children; len(kids) > 0 {
			parts := make([]string, 0, len(kids))
			for _, c := range kids {
				p := st.Muted.Render("○ ") + c.DeviceID
				if c.Connected {
					p = st.HeaderUp.Render("● ") + c.DeviceID
				}
				if !c.LastActivity.IsZero() {
					p += st.Muted.Render(" heard ") + ago(c.LastActivity, now)
				}
				if c.QueuedReports > 0 {
					p += st.Muted.Render(" · ") + plural(c.QueuedReports, "report", "reports") + " queued"
				}
				if c.QueuedMessages > 0 {
					p += st.Muted.Render(" · ") + plural(c.QueuedMessages, "message", "messages") + " queued"
				}
				parts = append(parts, p)
			}
			lines = append(lines, wrapped(label("Leaves")+" ", strings.Join(parts, st.Muted.Render(" | ")), d.Width, 2)...)
		}
	}
	return lines
}

// cachedVersions is a cached twin's desired and reported $version, with
// "↑N" when N of its reported patches wait in the outbox: "2/9 ↑3".
func cachedVersions(v mgmtclient.TwinVersions) string {
	s := fmt.Sprintf("%d/%d", v.DesiredVersion, v.ReportedVersion)
	if v.QueuedReports > 0 {
		s += fmt.Sprintf(" ↑%d", v.QueuedReports)
	}
	return s
}

// hubVersions is the twin's versions as the hub last sent them, "—" when
// it never did (or the daemon does not say).
func hubVersions(v mgmtclient.TwinVersions) string {
	if v.HubSeenAt.IsZero() {
		return "—"
	}
	return fmt.Sprintf("%d/%d", v.HubDesiredVersion, v.HubReportedVersion)
}

// twinsLegend says what the twin versions are and how old the hub's are:
// as of the last sync while connected (the hub answers each change at
// once), as last seen, with their age, while offline.
func (d *Device) twinsLegend(now time.Time) string {
	st := d.Styles
	known := false
	for _, tv := range d.status.Twins {
		known = known || !tv.HubSeenAt.IsZero()
	}
	l := d.link
	s := st.Muted.Render("cached desired/reported (↑ reports queued) · hub's ")
	switch {
	case !known && l.Connected:
		s += "— (not synced yet)"
	case !known:
		s += "— " + st.Muted.Render("(offline since "+clock(l.Since)+")")
	case l.Connected:
		s += "as of " + clock(l.LastSync) + st.Muted.Render(" (the last sync; it answers each change)")
	default:
		s += "last seen " + clock(l.LastSync) + ", " + span(now.Sub(l.LastSync)) + " old " +
			st.HeaderDown.Render("(offline since "+clock(l.Since)+")")
	}
	return s
}

// queue describes one part of the message queue: "upstream empty", or
// "upstream 12 messages · 14 KB · oldest 3s ago · 2 expired".
func (d *Device) queue(name string, q mgmtclient.QueueStats, now time.Time) string {
	st := d.Styles
	s := name + " "
	if q.Count == 0 {
		s += "empty"
	} else {
		s += plural(q.Count, "message", "messages") + st.Muted.Render(" · ") + size(int(q.Bytes)) +
			st.Muted.Render(" · oldest ") + ago(q.Oldest, now)
	}
	if q.Expired > 0 {
		s += st.Muted.Render(" · ") + fmt.Sprintf("%d expired", q.Expired)
	}
	return s
}

// wrapped lays text out in lines of width after prefix (the first) or as
// many spaces (the rest), at most n lines, the last cut with "…".
func wrapped(prefix, text string, width, n int) []string {
	indent := strings.Repeat(" ", ansi.StringWidth(prefix))
	w := max(width-len(indent), 10)
	parts := strings.Split(ansi.Wrap(text, w, ""), "\n")
	if len(parts) > n {
		parts = parts[:n]
		parts[n-1] = ansi.Truncate(parts[n-1]+" …", w-1, "") + "…"
	}
	out := make([]string, len(parts))
	for i, p := range parts {
		if i == 0 {
			out[i] = prefix + p
		} else {
			out[i] = indent + p
		}
	}
	return out
}

// detail is the line under the table: the selected module's particulars.
func (d *Device) detail() string {
	row, ok := d.table.Selected()
	if !ok {
		return ""
	}
	m, ok := d.modules[row.ID]
	if !ok {
		return ""
	}
	st := d.Styles
	parts := []string{st.Title.Render(m.Name)}
	if !d.wide {
		parts = append(parts, image(m))
	}
	if tw := d.twin(m.Name); tw != "" {
		parts = append(parts, tw)
	}
	if m.Status != m.DesiredStatus && m.DesiredStatus != "" {
		parts = append(parts, "desired "+m.DesiredStatus)
	}
	if m.ExitCode != nil {
		parts = append(parts, fmt.Sprintf("exit %d at %s", *m.ExitCode, clock(m.ExitedAt)))
	}
	if !m.NextRestartAt.IsZero() && m.Status != "running" {
		parts = append(parts, "next restart "+clock(m.NextRestartAt))
	}
	if h := m.LastHealthCheck; h != nil && h.OK {
		parts = append(parts, "health check ok "+clock(h.At))
	} else if h != nil {
		parts = append(parts, "health check failed "+clock(h.At)+": "+h.Output)
	}
	if m.Description != "" {
		parts = append(parts, m.Description)
	}
	return strings.Join(parts, st.Muted.Render(" · "))
}

// twin describes a module's twin for the detail line: "twin 5/214, 16
// reports queued; hub 5/198 (sent 12:25:48)".
func (d *Device) twin(module string) string {
	if d.status == nil {
		return ""
	}
	for _, v := range d.status.Twins {
		if v.ModuleID != module {
			continue
		}
		s := fmt.Sprintf("twin %d/%d", v.DesiredVersion, v.ReportedVersion)
		if v.QueuedReports > 0 {
			s += ", " + plural(v.QueuedReports, "report", "reports") + " queued"
		}
		if v.HubSeenAt.IsZero() {
			return s + "; hub —"
		}
		return s + fmt.Sprintf("; hub %d/%d (sent %s)", v.HubDesiredVersion, v.HubReportedVersion, clock(v.HubSeenAt))
	}
	return ""
}

// View implements common.Model.
func (d *Device) View() string {
	lines := d.panel()
	for i, l := range lines {
		lines[i] = components.Fit(l, d.Width)
	}
	lines = append(lines, "")
	d.layout()
	lines = append(lines, d.table.View())
	if det := d.detail(); det != "" {
		lines = append(lines, wrapped("", det, d.Width, detailLines)...)
	}
	return strings.Join(lines, "\n")
}

// ShortHelp implements help.KeyMap.
func (d *Device) ShortHelp() []key.Binding {
	k := d.KeyMap
	return []key.Binding{k.Up, k.Down, k.Filter, k.Logs, k.Restart}
}

// FullHelp implements help.KeyMap.
func (d *Device) FullHelp() [][]key.Binding {
	k := d.KeyMap
	return [][]key.Binding{k.Moves(), {k.Filter, k.Select, k.Logs, k.Restart}}
}
