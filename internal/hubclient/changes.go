package hubclient

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
)

// Changes asks the hub which devices changed since cursor (see
// hubapi.ChangesPath); with wait > 0 it waits up to wait for a change.
// An empty cursor answers at once with Reset and the current cursor.
func (c *Client) Changes(ctx context.Context, cursor string, wait time.Duration) (*hubapi.Changes, error) {
	q := url.Values{}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	var out hubapi.Changes
	if _, err := c.do(ctx, http.MethodGet, hubapi.ChangesPath, q, nil, nil, &out); err != nil {
		return nil, err
	}
	if out.Cursor == "" {
		return nil, &UnavailableError{Addr: c.cs.HostName, Err: errEmptySync}
	}
	return &out, nil
}

// sendCtx sends v on ch unless ctx is done first, and reports whether it
// sent it.
func sendCtx[T any](ctx context.Context, ch chan<- T, v T) bool {
	select {
	case ch <- v:
		return true
	case <-ctx.Done():
		return false
	}
}

// ChangeEvent is what WatchChanges reports. Kind is LinkDown, LinkUp or
// WatchEnded (with Err) for the link; TwinChanged for a change, with
// Devices (the ids of the devices whose identity, modules or twins
// changed) or Reset (read everything again: the first event, and after the
// hub restarted or the watch fell too far behind).
type ChangeEvent struct {
	Kind    TwinEventKind
	Reset   bool
	Devices []string
	Err     error
	Retry   time.Duration
}

// FromCursor starts WatchChanges from cursor (the hubapi.ChangesCursorHeader
// of a page read before), instead of with a Reset.
func FromCursor(cursor string) WatchOption { return func(c *watchConfig) { c.cursor = cursor } }

// WatchChanges follows the hub's registry-wide change stream with long
// polls (no polling of devices). The first event has Reset set: the caller
// reads what it shows, and applies the events after it. With FromCursor,
// the caller has read what it shows already: the events start with the
// changes after that cursor (and a Reset only when the hub cannot tell
// them, e.g. it restarted meanwhile). Errors that may
// pass are LinkDown/LinkUp with a doubling back-off (as WatchTwin's); any
// other ends the watch with WatchEnded. The channel closes after WatchEnded
// or when ctx is done; read it until then, or cancel ctx. It needs a policy
// with registryRead.
func (c *Client) WatchChanges(ctx context.Context, opts ...WatchOption) <-chan ChangeEvent {
	cfg := watchConfig{wait: 30 * time.Second, minBackoff: 250 * time.Millisecond, maxBackoff: 30 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	cfg.wait = min(cfg.wait, hubapi.MaxWait)
	cfg.minBackoff = max(cfg.minBackoff, time.Millisecond)
	cfg.maxBackoff = max(cfg.maxBackoff, cfg.minBackoff)
	ch := make(chan ChangeEvent)
	go func() {
		defer close(ch)
		send := func(ev ChangeEvent) bool { return sendCtx(ctx, ch, ev) }
		var (
			cursor  = cfg.cursor
			down    bool
			backoff time.Duration
		)
		for {
			wait := cfg.wait
			if cursor == "" || down {
				wait = 0
			}
			ans, err := c.Changes(ctx, cursor, wait)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				if !retriable(err) {
					send(ChangeEvent{Kind: WatchEnded, Err: err})
					return
				}
				backoff = min(max(2*backoff, cfg.minBackoff), cfg.maxBackoff)
				retry := Jitter(backoff) // spread: see Jitter
				if !send(ChangeEvent{Kind: LinkDown, Err: err, Retry: retry}) {
					return
				}
				down = true
				if !pause(ctx, retry) {
					return
				}
				continue
			}
			if down {
				down, backoff = false, 0
				if !send(ChangeEvent{Kind: LinkUp}) {
					return
				}
			}
			cursor = ans.Cursor
			if ans.Reset || len(ans.Devices) > 0 {
				if !send(ChangeEvent{Kind: TwinChanged, Reset: ans.Reset, Devices: ans.Devices}) {
					return
				}
			}
		}
	}()
	return ch
}
