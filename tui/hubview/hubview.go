// Package hubview holds the hub's views of outpost's terminal UI: the
// fleet (every device), a device (its modules as $edgeAgent reports them)
// and a twin (desired and reported, live, with in-place editing). They
// read the hub only through Hub (a *hubclient.Client in the program), in
// commands whose results come back as messages.
package hubview

import (
	"context"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/twin"
	"github.com/outpost-edge/outpost/tui/common"
)

// Hub is what the hub views use of a hub; *hubclient.Client is one.
type Hub interface {
	ListFleetPage(ctx context.Context, continuation string, top int) (hubclient.FleetPage, error)
	FleetDevices(ctx context.Context, ids []string) ([]hubapi.FleetDevice, error)
	GetTwin(ctx context.Context, deviceID, moduleID string) (*twin.Twin, error)
	PatchTwin(ctx context.Context, deviceID, moduleID string, patch []byte, etag string) (*twin.Twin, error)
	WatchTwin(ctx context.Context, deviceID, moduleID string, opts ...hubclient.WatchOption) (<-chan hubclient.TwinEvent, error)
	WatchChanges(ctx context.Context, opts ...hubclient.WatchOption) <-chan hubclient.ChangeEvent
	Sync(ctx context.Context, deviceID, cursor string, wait time.Duration) (*hubapi.Sync, error)
}

// Root returns the view `outpost tui` opens: the fleet, a device's modules
// (device given) or a module's twin (module given too).
func Root(c common.Common, h Hub, device, module string) common.Component {
	switch {
	case module != "":
		return NewTwin(c, h, device, module)
	case device != "":
		return NewDevice(c, h, device)
	}
	return NewFleet(c, h)
}
