package hubview

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/tui/common"
	"github.com/outpost-edge/outpost/tui/components"
)

// agentModule is the name of the agent's twin, whose reported properties
// say how each module runs.
const agentModule = "$edgeAgent"

// Device is one device: its modules as the hub knows them, with how they
// run from $edgeAgent's reported properties, and whether each module's
// reported properties have caught up with its desired ones. It follows
// the device's sync long poll (no polling).
type Device struct {
	common.Common
	hub    Hub
	id     string
	table  *components.Table
	cursor string
	twins  map[string]map[string]any // module → twin document
	mods   []string
	loaded bool
}

// NewDevice returns the view of device id.
func NewDevice(c common.Common, h Hub, id string) *Device {
	t := components.NewTable(c,
		components.Column{Title: "MODULE", Width: 12, Grow: true},
		components.Column{Title: "STATUS", Width: 9, Status: true},
		components.Column{Title: "RESTARTS", Width: 8},
		components.Column{Title: "DIGEST", Width: 14},
		components.Column{Title: "STARTED", Width: 9},
		components.Column{Title: "DESIRED", Width: 7},
		components.Column{Title: "REPORTED", Width: 10},
	)
	t.Empty = "no modules: `outpost deploy " + id + " -f MANIFEST` deploys some"
	return &Device{Common: c, hub: h, id: id, table: t, twins: map[string]map[string]any{}}
}

// Title implements common.Titled.
func (d *Device) Title() string { return d.id }

type deviceSyncMsg struct {
	view *Device
	s    *hubapi.Sync
	err  error
}

// Init implements common.Model.
func (d *Device) Init() tea.Cmd { return d.poll(0) }

// poll asks for the device's state; with wait, the hub answers when it
// changes.
func (d *Device) poll(wait time.Duration) tea.Cmd {
	ctx, h, cursor := d.Ctx, d.hub, d.cursor
	return func() tea.Msg {
		s, err := h.Sync(ctx, d.id, cursor, wait)
		return deviceSyncMsg{view: d, s: s, err: err}
	}
}

// Update implements common.Model.
func (d *Device) Update(msg tea.Msg) (common.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case deviceSyncMsg:
		if msg.view != d {
			return d, nil
		}
		if d.Ctx.Err() != nil {
			return d, nil
		}
		if msg.err != nil {
			retry := tea.Tick(2*time.Second, func(time.Time) tea.Msg { return retryMsg{d} })
			return d, tea.Batch(common.Err(fmt.Errorf("device %s: %w", d.id, msg.err), ""), retry)
		}
		d.apply(msg.s)
		return d, d.poll(30 * time.Second)
	case retryMsg:
		if msg.view == d {
			return d, d.poll(0)
		}
	case tea.KeyPressMsg:
		if r, ok := d.table.Selected(); ok && !d.table.Capturing() && key.Matches(msg, d.KeyMap.Select) {
			return d, common.Push(NewTwin(d.Common, d.hub, d.id, r.ID))
		}
		_, cmd := d.table.Update(msg)
		return d, cmd
	case tea.PasteMsg: // into the filter
		_, cmd := d.table.Update(msg)
		return d, cmd
	}
	return d, nil
}

type retryMsg struct{ view *Device }

// apply takes in a sync answer.
func (d *Device) apply(s *hubapi.Sync) {
	d.cursor, d.loaded = s.Cursor, true
	if s.Full {
		d.twins = map[string]map[string]any{}
	}
	for _, raw := range s.Twins {
		var doc map[string]any
		if json.Unmarshal(raw, &doc) == nil {
			if m, _ := doc["moduleId"].(string); m != "" {
				d.twins[m] = doc
			}
		}
	}
	d.mods = d.mods[:0]
	for _, m := range s.Modules {
		d.mods = append(d.mods, m.ModuleID)
	}
	sort.Strings(d.mods)
	d.table.SetRows(d.rows())
}

func (d *Device) rows() []components.Row {
	now := d.Now()
	agent := sectionsOf(d.twins[agentModule])["reported"]
	rep, _ := agent.(map[string]any)
	runtime := map[string]map[string]any{}
	for _, group := range []string{"systemModules", "modules"} {
		g, _ := rep[group].(map[string]any)
		for name, v := range g {
			if m, ok := v.(map[string]any); ok {
				runtime[name] = m
			}
		}
	}
	rows := make([]components.Row, 0, len(d.mods))
	for _, id := range d.mods {
		rt := runtime[id]
		if rt == nil && strings.HasPrefix(id, "$") {
			rt = runtime[strings.TrimPrefix(id, "$")]
		}
		status, restarts, digest, started := "-", "-", "-", "-"
		if rt != nil {
			status = str(rt["runtimeStatus"], "unknown")
			if n, ok := rt["restartCount"].(float64); ok {
				restarts = strconv.Itoa(int(n))
			}
			digest = shortDigest(str(rt["imageDigest"], "-"))
			if t, err := time.Parse(time.RFC3339, str(rt["lastStartTimeUtc"], "")); err == nil {
				started = ago(now, t)
			}
		}
		desired, caught := "-", "-"
		if doc := d.twins[id]; doc != nil {
			s := sectionsOf(doc)
			dv := version(s["desired"])
			desired = "v" + strconv.FormatInt(dv, 10)
			caught = caughtUp(s["desired"], s["reported"])
		}
		rows = append(rows, components.Row{ID: id, Cells: []string{id, status, restarts, digest, started, desired, caught}})
	}
	return rows
}

// caughtUp says whether the module has reported since the last change of
// its desired properties: "yes", "waiting" while it has not answered, "-"
// when nothing is desired. Times are the newest $lastUpdated of any member
// of each section.
func caughtUp(desired, reported any) string {
	dm, _ := withoutMeta(desired).(map[string]any)
	if len(dm) == 0 {
		return "-"
	}
	rm, _ := withoutMeta(reported).(map[string]any)
	if len(rm) == 0 || newest(metaOf(reported), time.Time{}).Before(newest(metaOf(desired), time.Time{})) {
		return "waiting"
	}
	return "yes"
}

func metaOf(section any) any {
	m, _ := section.(map[string]any)
	return m["$metadata"]
}

// newest returns the latest $lastUpdated in a $metadata tree.
func newest(meta any, t time.Time) time.Time {
	m, ok := meta.(map[string]any)
	if !ok {
		return t
	}
	for k, v := range m {
		if k == "$lastUpdated" {
			if u, err := time.Parse(time.RFC3339Nano, str(v, "")); err == nil && u.After(t) {
				t = u
			}
			continue
		}
		t = newest(v, t)
	}
	return t
}

func version(section any) int64 {
	m, _ := section.(map[string]any)
	n, _ := m["$version"].(float64)
	return int64(n)
}

func str(v any, def string) string {
	if s, ok := v.(string); ok && s != "" {
		return s
	}
	return def
}

// shortDigest is sha256:0123456789ab.
func shortDigest(d string) string {
	if alg, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return alg + ":" + hex[:12]
	}
	return d
}

// ago formats t relative to now ("5s ago", "3m ago", "2h ago", "4d ago").
func ago(now, t time.Time) string {
	if t.IsZero() || t.Year() <= 1 {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return t.UTC().Format("15:04:05")
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// Capturing implements common.Capturer.
func (d *Device) Capturing() bool { return d.table.Capturing() }

// ConsumesBack implements common.BackConsumer.
func (d *Device) ConsumesBack() bool { return d.table.HasFilter() }

// View implements common.Model.
func (d *Device) View() string {
	if !d.loaded {
		return d.Styles.Muted.Render("reading device " + d.id + "…")
	}
	return d.table.View()
}

// SetSize implements common.Component.
func (d *Device) SetSize(w, h int) {
	d.Common.SetSize(w, h)
	d.table.SetSize(w, h)
}

// ShortHelp implements help.KeyMap.
func (d *Device) ShortHelp() []key.Binding {
	return append(d.table.ShortHelp(), d.KeyMap.Select)
}

// FullHelp implements help.KeyMap.
func (d *Device) FullHelp() [][]key.Binding {
	return append(d.table.FullHelp(), []key.Binding{d.KeyMap.Select})
}
