package hubview

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/tui/common"
	"github.com/outpost-edge/outpost/tui/components"
)

// Fleet is every device of the hub, live: it follows the hub's change
// stream and reads again only the devices that changed. The table draws
// only the rows on screen, so 10,000 devices cost no more than 20. The
// first frame waits for one request: the first page carries the change
// stream's cursor, from which the watch starts.
type Fleet struct {
	common.Common
	hub     Hub
	table   *components.Table
	devices map[string]hubapi.FleetDevice
	watch   <-chan hubclient.ChangeEvent
	watched bool // the watch is started
	loaded  bool
	lit     map[string]int // device → generation of its highlight
	gen     int
	reading int                           // number of the current full read
	fresh   map[string]hubapi.FleetDevice // what the current full read has brought
	more    bool                          // the full read goes on
}

// NewFleet returns the fleet view.
func NewFleet(c common.Common, h Hub) *Fleet {
	t := components.NewTable(c,
		components.Column{Title: "DEVICE", Width: 16, Grow: true},
		components.Column{Title: "STATUS", Width: 8, Status: true},
		components.Column{Title: "CONNECTION", Width: 12, Status: true},
		components.Column{Title: "LAST ACTIVITY", Width: 13},
		components.Column{Title: "MODULES", Width: 7},
		components.Column{Title: "DEPLOYMENT", Width: 10, Status: true},
		components.Column{Title: "EDGE", Width: 4},
	)
	t.Empty = "no devices yet: `outpost device create ID` creates one"
	return &Fleet{Common: c, hub: h, table: t, devices: map[string]hubapi.FleetDevice{}, lit: map[string]int{}}
}

// Title implements common.Titled.
func (f *Fleet) Title() string { return "fleet" }

type (
	fleetWatchMsg struct {
		view *Fleet
		ch   <-chan hubclient.ChangeEvent
	}
	fleetEventMsg struct {
		view *Fleet
		ev   hubclient.ChangeEvent
		ok   bool
	}
	// devicesMsg carries devices read from the hub: a page of all of them
	// (all set: first for the first page, next for the token of the one
	// after), or those that changed (gone: deleted).
	devicesMsg struct {
		view    *Fleet
		all     bool
		first   bool
		next    string
		cursor  string // the change stream's, from before the first page
		devices []hubapi.FleetDevice
		gone    []string
		err     error
		gen     int
	}
	fleetUnlightMsg struct {
		view *Fleet
		gen  int
	}
)

// Init implements common.Model: it reads the first page, then follows the
// change stream from the cursor that page came with.
func (f *Fleet) Init() tea.Cmd {
	f.reading++
	return f.page("", f.reading)
}

// follow starts the watch from cursor ("": with a reset, from a hub that
// gave none).
func (f *Fleet) follow(cursor string) tea.Cmd {
	f.watched = true
	var opts []hubclient.WatchOption
	if cursor != "" {
		opts = append(opts, hubclient.FromCursor(cursor))
	}
	ch := f.hub.WatchChanges(f.Ctx, opts...)
	return func() tea.Msg { return fleetWatchMsg{view: f, ch: ch} }
}

func (f *Fleet) next() tea.Cmd {
	ch := f.watch
	return func() tea.Msg {
		ev, ok := <-ch
		return fleetEventMsg{view: f, ev: ev, ok: ok}
	}
}

// Update implements common.Model.
func (f *Fleet) Update(msg tea.Msg) (common.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case fleetWatchMsg:
		if msg.view != f {
			return f, nil
		}
		f.watch = msg.ch
		return f, f.next()
	case fleetEventMsg:
		if msg.view != f || !msg.ok {
			return f, nil
		}
		return f, tea.Batch(f.event(msg.ev), f.next())
	case devicesMsg:
		if msg.view != f {
			return f, nil
		}
		return f, f.apply(msg)
	case fleetUnlightMsg:
		if msg.view == f {
			for id, g := range f.lit {
				if g <= msg.gen {
					delete(f.lit, id)
				}
			}
			f.refresh()
		}
		return f, nil
	case tea.KeyPressMsg:
		if r, ok := f.table.Selected(); ok && !f.table.Capturing() && key.Matches(msg, f.KeyMap.Select) {
			if d := f.devices[r.ID]; d.Capabilities == nil || !d.Capabilities.IoTEdge {
				// A device that is not an IoT Edge device runs no modules
				// of outpost's: its own twin is what there is to see.
				return f, common.Push(NewTwin(f.Common, f.hub, r.ID, ""))
			}
			return f, common.Push(NewDevice(f.Common, f.hub, r.ID))
		}
		_, cmd := f.table.Update(msg)
		return f, cmd
	case tea.PasteMsg: // into the filter
		_, cmd := f.table.Update(msg)
		return f, cmd
	}
	return f, nil
}

func (f *Fleet) event(ev hubclient.ChangeEvent) tea.Cmd {
	ctx, h := f.Ctx, f.hub
	switch ev.Kind {
	case hubclient.LinkDown:
		return tea.Batch(common.Err(fmt.Errorf("the hub does not answer: %w", ev.Err), ""),
			func() tea.Msg { return common.ConnMsg{Up: false} })
	case hubclient.LinkUp:
		return tea.Batch(common.Status("the hub answers again"), func() tea.Msg { return common.ConnMsg{Up: true} })
	case hubclient.WatchEnded:
		return common.Err(fmt.Errorf("following the hub's changes stopped: %w", ev.Err), "")
	}
	if ev.Reset {
		f.reading++
		return f.page("", f.reading)
	}
	ids := ev.Devices
	return func() tea.Msg {
		ds, err := h.FleetDevices(ctx, ids)
		m := devicesMsg{view: f, devices: ds, err: err}
		found := make(map[string]bool, len(ds))
		for _, d := range ds {
			found[d.DeviceID] = true
		}
		for _, id := range ids {
			if !found[id] && err == nil {
				m.gone = append(m.gone, id)
			}
		}
		return m
	}
}

// firstPage and pageSize are the sizes of the pages of a full read: a
// small first one, so that the first frame comes at once, then larger ones.
const (
	firstPage = 100
	pageSize  = 1000
)

// page reads a page of every device (from continuation; "" for the first)
// for read number gen.
func (f *Fleet) page(continuation string, gen int) tea.Cmd {
	ctx, h := f.Ctx, f.hub
	return func() tea.Msg {
		top := pageSize
		if continuation == "" {
			top = firstPage
		}
		p, err := h.ListFleetPage(ctx, continuation, top)
		return devicesMsg{view: f, all: true, first: continuation == "", next: p.Next, cursor: p.Cursor, devices: p.Devices, err: err, gen: gen}
	}
}

func (f *Fleet) apply(m devicesMsg) tea.Cmd {
	var cmds []tea.Cmd
	if !f.watched && m.all && m.first {
		// The first read's first page (or its failure: the watch's
		// reset reads again once the hub answers).
		cmds = append(cmds, f.follow(m.cursor))
	}
	if m.err != nil {
		return tea.Batch(append(cmds, common.Err(fmt.Errorf("list devices: %w", m.err), ""))...)
	}
	if m.all {
		if m.gen != f.reading {
			return nil // a read that a newer reset replaced
		}
		if m.first {
			f.fresh = make(map[string]hubapi.FleetDevice, len(m.devices))
		}
		for _, d := range m.devices {
			f.fresh[d.DeviceID] = d
		}
		f.more = m.next != ""
		switch {
		case f.more && !f.loaded:
			// The first read: show each page as it comes.
			f.devices = f.fresh
		case f.more:
			// A read again (after a reset): keep showing the old rows
			// until it is whole.
		default:
			f.devices, f.fresh = f.fresh, nil
		}
		if !f.loaded {
			cmds = append(cmds, func() tea.Msg { return common.ConnMsg{Up: true} })
			f.loaded = true
		}
		if f.more {
			cmds = append(cmds, f.page(m.next, m.gen))
		}
		f.refresh()
		return tea.Batch(cmds...)
	} else {
		f.gen++
		gen := f.gen
		for _, d := range m.devices {
			f.lit[d.DeviceID] = gen
		}
		cmds = append(cmds, tea.Tick(HighlightFor, func(time.Time) tea.Msg { return fleetUnlightMsg{view: f, gen: gen} }))
	}
	for _, d := range m.devices {
		f.devices[d.DeviceID] = d
	}
	for _, id := range m.gone {
		delete(f.devices, id)
	}
	f.refresh()
	return tea.Batch(cmds...)
}

// refresh rebuilds the rows from the devices.
func (f *Fleet) refresh() {
	ids := make([]string, 0, len(f.devices))
	for id := range f.devices {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	now := f.Now()
	rows := make([]components.Row, len(ids))
	for i, id := range ids {
		d := f.devices[id]
		edge := "no"
		if d.Capabilities != nil && d.Capabilities.IoTEdge {
			edge = "yes"
		}
		_, lit := f.lit[id]
		deployment := "-"
		if d.Deployment != nil {
			deployment = d.Deployment.Status()
			if deployment == "failed" {
				deployment += " " + strconv.Itoa(d.Deployment.Code)
			}
		}
		rows[i] = components.Row{ID: id, Mark: lit, Cells: []string{id, d.Status, lowerFirst(d.ConnectionState), ago(now, d.LastActivityTime),
			strconv.Itoa(d.ModuleCount), deployment, edge}}
	}
	f.table.SetRows(rows)
}

func lowerFirst(s string) string {
	if s == "" {
		return "-"
	}
	b := []byte(s)
	if b[0] >= 'A' && b[0] <= 'Z' {
		b[0] += 'a' - 'A'
	}
	return string(b)
}

// Table is the fleet's table (for tests).
func (f *Fleet) Table() *components.Table { return f.table }

// Capturing implements common.Capturer.
func (f *Fleet) Capturing() bool { return f.table.Capturing() }

// ConsumesBack implements common.BackConsumer.
func (f *Fleet) ConsumesBack() bool { return f.table.HasFilter() }

// View implements common.Model.
func (f *Fleet) View() string {
	if !f.loaded {
		return f.Styles.Muted.Render("reading the fleet…")
	}
	shown, total := f.table.Count()
	count := fmt.Sprintf("devices (%d)", total)
	if shown != total {
		count = fmt.Sprintf("devices (%d of %d)", shown, total)
	}
	title := f.Styles.Title.Render(count)
	if f.more && f.fresh != nil {
		title += f.Styles.Muted.Render(fmt.Sprintf("  reading… %d so far", len(f.fresh)))
	}
	return title + "\n" + f.table.View()
}

// SetSize implements common.Component.
func (f *Fleet) SetSize(w, h int) {
	f.Common.SetSize(w, h)
	f.table.SetSize(w, h-1)
}

// ShortHelp implements help.KeyMap.
func (f *Fleet) ShortHelp() []key.Binding {
	return append(f.table.ShortHelp(), f.KeyMap.Select)
}

// FullHelp implements help.KeyMap.
func (f *Fleet) FullHelp() [][]key.Binding {
	return append(f.table.FullHelp(), []key.Binding{f.KeyMap.Select})
}
