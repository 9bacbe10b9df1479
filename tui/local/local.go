// Package local is the device-local view of outpost's terminal UI: what a
// device's daemon says over its management socket (internal/mgmtclient),
// complete with the hub unreachable — that is when it is opened. It shows
// the link to the hub (up or offline, since when, the last sync, the last
// error), the outbox (reported patches waiting, bytes, the oldest's age, how
// fast it drains once the hub is back), the cached twins' versions, and
// each module (runtime status, restarts, uptime, its twin's versions, its
// link to the module broker, image, health), with each module's logs
// (follow, scroll, search) and a restart behind a confirmation.
//
// Nothing is polled: the view follows the daemon's event stream
// (mgmtclient.Watch) and reads GET /status again when an event says the
// link or the outbox changed (the twins' versions and the broker are only
// there).
package local

import (
	"context"

	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/tui/common"
)

// Client is what the view uses of the daemon; *mgmtclient.Client is one.
type Client interface {
	Status(ctx context.Context) (*mgmtclient.Status, error)
	Watch(ctx context.Context) (<-chan mgmtclient.Event, error)
	Follow(ctx context.Context, opts mgmtclient.FollowOptions, fn func(mgmtclient.FollowEvent)) error
	Restart(ctx context.Context, module string) error
	Socket() string
}

// Root returns the view `outpost tui` opens on a device: the device, with
// module's logs opened on top of it when module is not "".
func Root(c common.Common, mc Client, module string) common.Component {
	return NewDevice(c, mc, module)
}
