package hubclient

import (
	"context"
	"slices"
)

// watchDeviceTwin is WatchTwin for a device's own twin (no module): the
// device sync long poll carries module twins only, so it follows the
// registry-wide change stream (WatchChanges, which needs registryRead)
// and reads the twin again when the device is named or on a reset.
func (c *Client) watchDeviceTwin(ctx context.Context, deviceID string, opts []WatchOption) <-chan TwinEvent {
	ch := make(chan TwinEvent)
	go func() {
		defer close(ch)
		send := func(ev TwinEvent) bool { return sendCtx(ctx, ch, ev) }
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var cur *TwinEvent // the last twin sent
		for ev := range c.WatchChanges(ctx, opts...) {
			switch ev.Kind {
			case LinkDown:
				if !send(TwinEvent{Kind: LinkDown, Err: ev.Err, Retry: ev.Retry}) {
					return
				}
				continue
			case LinkUp:
				if !send(TwinEvent{Kind: LinkUp}) {
					return
				}
				continue
			case WatchEnded:
				send(TwinEvent{Kind: WatchEnded, Err: ev.Err})
				return
			}
			if !ev.Reset && !slices.Contains(ev.Devices, deviceID) {
				continue
			}
			tw, err := c.GetTwin(ctx, deviceID, "")
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				// A reading that fails while the stream answers: the
				// device is gone or the credentials are refused.
				send(TwinEvent{Kind: WatchEnded, Err: err})
				return
			}
			next := TwinEvent{Kind: TwinInitial, Twin: tw}
			if cur != nil {
				if cur.Twin.Version == tw.Version {
					continue // another part of the device changed
				}
				next = TwinEvent{Kind: TwinChanged, Twin: tw, Prev: cur.Twin}
			}
			if !send(next) {
				return
			}
			cur = &next
		}
	}()
	return ch
}
