package hubview

import (
	"fmt"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/tui/common"
	"github.com/outpost-edge/outpost/tui/components"
)

// Fleet is the list of every device of the hub.
type Fleet struct {
	common.Common
	hub   Hub
	table *components.Table
}

// devicesMsg carries the devices read from the hub.
type devicesMsg struct {
	devices []hubapi.Device
	err     error
}

// NewFleet returns the fleet view.
func NewFleet(c common.Common, h Hub) *Fleet {
	t := components.NewTable(c,
		components.Column{Title: "DEVICE", Width: 16, Grow: true},
		components.Column{Title: "STATUS", Width: 8, Status: true},
		components.Column{Title: "CONNECTION", Width: 12, Status: true},
	)
	t.Empty = "no devices yet: `outpost device create ID` creates one"
	return &Fleet{Common: c, hub: h, table: t}
}

// Title implements common.Titled.
func (f *Fleet) Title() string { return "fleet" }

// Init implements tea.Model.
func (f *Fleet) Init() tea.Cmd {
	ctx, h := f.Ctx, f.hub
	return func() tea.Msg {
		ds, err := h.ListDevices(ctx)
		return devicesMsg{devices: ds, err: err}
	}
}

// Update implements tea.Model.
func (f *Fleet) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case devicesMsg:
		if msg.err != nil {
			return f, common.Err(fmt.Errorf("list devices: %w", msg.err), "")
		}
		rows := make([]components.Row, len(msg.devices))
		for i, d := range msg.devices {
			rows[i] = components.Row{ID: d.DeviceID, Cells: []string{d.DeviceID, d.Status, d.ConnectionState}}
		}
		f.table.SetRows(rows)
		return f, nil
	case tea.KeyMsg:
		_, cmd := f.table.Update(msg)
		return f, cmd
	}
	return f, nil
}

// Capturing implements common.Capturer.
func (f *Fleet) Capturing() bool { return f.table.Capturing() }

// ConsumesBack implements common.BackConsumer.
func (f *Fleet) ConsumesBack() bool { return f.table.HasFilter() }

// View implements tea.Model.
func (f *Fleet) View() string { return f.table.View() }

// SetSize implements common.Component.
func (f *Fleet) SetSize(w, h int) {
	f.Common.SetSize(w, h)
	f.table.SetSize(w, h)
}

// ShortHelp implements help.KeyMap.
func (f *Fleet) ShortHelp() []key.Binding { return f.table.ShortHelp() }

// FullHelp implements help.KeyMap.
func (f *Fleet) FullHelp() [][]key.Binding { return f.table.FullHelp() }
