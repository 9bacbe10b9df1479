package daemon

import (
	"github.com/outpost-edge/outpost/internal/broker"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
)

// childLinks is the child devices that connected to the broker since the
// daemon started, with their reported patches waiting in the outbox and
// their messages waiting in the message queue, for outpost status.
func (d *Daemon) childLinks() []mgmtclient.Child {
	b, ok := d.broker.(interface{ ChildLinks() []broker.ChildStatus })
	if !ok {
		return nil
	}
	queued, err := d.sy.ChildOutbox()
	if err != nil {
		d.log.Warn("read the children's queued reports for status", "err", err)
	}
	var msgs map[string]int
	if d.msgs != nil {
		msgs = d.msgs.BySource()
	}
	var out []mgmtclient.Child
	for _, c := range b.ChildLinks() {
		out = append(out, mgmtclient.Child{DeviceID: c.DeviceID, Connected: c.Connected, Since: c.Since,
			LastActivity: c.LastActivity, QueuedReports: queued[c.DeviceID], QueuedMessages: msgs[broker.MessageSource(c.DeviceID, "")]})
	}
	return out
}
