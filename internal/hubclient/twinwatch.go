package hubclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/outpost-edge/outpost/internal/errdefs"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/twin"
)

// TwinEventKind says what a TwinEvent reports.
type TwinEventKind int

const (
	// TwinInitial: Twin is the twin as the watch first read it.
	TwinInitial TwinEventKind = iota + 1
	// TwinChanged: the twin changed from Prev to Twin.
	TwinChanged
	// LinkDown: a request failed with Err, which may pass (the hub is
	// unreachable or restarting); the watch tries again after Retry.
	LinkDown
	// LinkUp: the hub answers again after a LinkDown.
	LinkUp
	// WatchEnded: the watch stopped for good with Err (the device or module
	// is not found or was deleted, the credentials are refused, …). It is
	// the last event; the channel closes after it.
	WatchEnded
)

func (k TwinEventKind) String() string {
	switch k {
	case TwinInitial:
		return "initial"
	case TwinChanged:
		return "changed"
	case LinkDown:
		return "link down"
	case LinkUp:
		return "link up"
	case WatchEnded:
		return "ended"
	}
	return fmt.Sprintf("TwinEventKind(%d)", int(k))
}

// TwinEvent is what WatchTwin reports.
type TwinEvent struct {
	Kind  TwinEventKind
	Twin  *twin.Twin    // TwinInitial, TwinChanged: the twin now
	Prev  *twin.Twin    // TwinChanged: the twin before
	Err   error         // LinkDown, WatchEnded
	Retry time.Duration // LinkDown: how long the watch waits before it tries again
}

// ModuleNotFoundError means the watched module is not (or no longer) one of
// the device's modules. errors.Is(err, ErrNotFound) is true.
type ModuleNotFoundError struct {
	DeviceID, ModuleID string
	Deleted            bool // it was there when the watch started
}

func (e *ModuleNotFoundError) Error() string {
	if e.Deleted {
		return fmt.Sprintf("module %s/%s was deleted", e.DeviceID, e.ModuleID)
	}
	return fmt.Sprintf("module %s/%s not found", e.DeviceID, e.ModuleID)
}

// Is makes errors.Is(err, ErrNotFound) true.
func (e *ModuleNotFoundError) Is(target error) bool { return target == ErrNotFound }

// WatchOption configures WatchTwin.
type WatchOption func(*watchConfig)

type watchConfig struct {
	wait                   time.Duration
	minBackoff, maxBackoff time.Duration
	cursor                 string // WatchChanges's first cursor (FromCursor)
}

// WithWait sets how long each long-poll waits for a change (default 30 s,
// at most hubapi.MaxWait).
func WithWait(d time.Duration) WatchOption { return func(c *watchConfig) { c.wait = d } }

// WithBackoff sets the pause after the first failed request and the
// longest pause: each failure in a row doubles it up to max (defaults
// 250 ms and 30 s).
func WithBackoff(minimum, maximum time.Duration) WatchOption {
	return func(c *watchConfig) { c.minBackoff, c.maxBackoff = minimum, maximum }
}

// WatchTwin follows a module twin through the hub's device sync long-poll
// (no polling: each request waits until something of the device changes).
// The events come in this order: TwinInitial once, then TwinChanged for each
// change of the twin (its version or etag), with LinkDown/LinkUp around
// requests that fail with an error that may pass (the hub unreachable,
// restarting or answering 5xx): the watch then retries with a doubling
// back-off and, once the hub answers, reports what changed meanwhile as one
// TwinChanged. Any other error ends the watch with WatchEnded.
//
// With moduleID "", it follows the device's own twin instead, through the
// registry-wide change stream (WatchChanges: it needs registryRead), and
// reads the twin again each time the stream names the device.
//
// The channel closes after WatchEnded or when ctx is done. The caller must
// keep reading until it closes or cancel ctx. The needed authority is the
// device's sync endpoint: an owner's (registry read) or the device's own
// connection string.
func (c *Client) WatchTwin(ctx context.Context, deviceID, moduleID string, opts ...WatchOption) (<-chan TwinEvent, error) {
	if deviceID == "" {
		return nil, fmt.Errorf("watch twin: want a device id, got %q/%q", deviceID, moduleID)
	}
	if moduleID == "" {
		return c.watchDeviceTwin(ctx, deviceID, opts), nil
	}
	cfg := watchConfig{wait: 30 * time.Second, minBackoff: 250 * time.Millisecond, maxBackoff: 30 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	cfg.wait = min(cfg.wait, hubapi.MaxWait)
	cfg.minBackoff = max(cfg.minBackoff, time.Millisecond)
	cfg.maxBackoff = max(cfg.maxBackoff, cfg.minBackoff)
	ch := make(chan TwinEvent)
	w := &twinWatch{c: c, device: deviceID, module: moduleID, cfg: cfg, out: ch}
	go func() {
		defer close(ch)
		w.run(ctx)
	}()
	return ch, nil
}

type twinWatch struct {
	c              *Client
	device, module string
	cfg            watchConfig
	out            chan<- TwinEvent
}

// send delivers ev unless ctx is done first.
func (w *twinWatch) send(ctx context.Context, ev TwinEvent) bool {
	select {
	case w.out <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// retriable reports whether err may pass by itself.
func retriable(err error) bool {
	if errors.Is(err, errdefs.ErrUnavailable) {
		return true
	}
	var he *Error
	return errors.As(err, &he) && (he.StatusCode >= 500 || he.StatusCode == http.StatusTooManyRequests)
}

func (w *twinWatch) run(ctx context.Context) {
	var (
		cur     *twin.Twin
		cursor  string
		down    bool
		backoff time.Duration
	)
	for {
		wait := w.cfg.wait
		if cur == nil || down {
			wait = 0 // the first read, or a probe after a failure: answer at once
		}
		s, err := w.c.Sync(ctx, w.device, cursor, wait)
		if err == nil {
			err = w.checkModule(s, cur != nil)
		}
		var next *twin.Twin
		if err == nil {
			next, err = findTwin(s, w.module)
		}
		if err == nil && next == nil && cur == nil { // not in the first answer: read it directly
			next, err = w.c.GetTwin(ctx, w.device, w.module)
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if !retriable(err) {
				w.send(ctx, TwinEvent{Kind: WatchEnded, Err: err})
				return
			}
			backoff = min(max(2*backoff, w.cfg.minBackoff), w.cfg.maxBackoff)
			retry := Jitter(backoff) // spread: see Jitter
			if !w.send(ctx, TwinEvent{Kind: LinkDown, Err: err, Retry: retry}) {
				return
			}
			down = true
			if !pause(ctx, retry) {
				return
			}
			continue
		}
		cursor = s.Cursor
		if down {
			down, backoff = false, 0
			if !w.send(ctx, TwinEvent{Kind: LinkUp}) {
				return
			}
		}
		switch {
		case cur == nil:
			if !w.send(ctx, TwinEvent{Kind: TwinInitial, Twin: next}) {
				return
			}
			cur = next
		case next != nil && (next.Version != cur.Version || next.ETag != cur.ETag):
			if !w.send(ctx, TwinEvent{Kind: TwinChanged, Twin: next, Prev: cur}) {
				return
			}
			cur = next
		}
	}
}

// checkModule fails when the sync answer does not list the module.
func (w *twinWatch) checkModule(s *hubapi.Sync, seen bool) error {
	for _, m := range s.Modules {
		if m.ModuleID == w.module {
			return nil
		}
	}
	return &ModuleNotFoundError{DeviceID: w.device, ModuleID: w.module, Deleted: seen}
}

// findTwin returns the module's twin from a sync answer, nil if absent.
func findTwin(s *hubapi.Sync, module string) (*twin.Twin, error) {
	for _, raw := range s.Twins {
		var id struct {
			ModuleID string `json:"moduleId"`
		}
		if json.Unmarshal(raw, &id) != nil || id.ModuleID != module {
			continue
		}
		return parseTwin(raw)
	}
	return nil, nil
}

// pause waits d, or less if ctx is done first; it reports whether the wait
// ran its course (false: ctx is done, stop).
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
