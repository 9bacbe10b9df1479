package mgmtclient

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Event types of GET /events.
const (
	// EventSnapshot is the first line: every module, the link, the outbox
	// and the message queue.
	EventSnapshot = "snapshot"
	// EventModule: a module was added or its status changed (Module).
	EventModule = "module"
	// EventModuleRemoved: a module left the deployment (Name).
	EventModuleRemoved = "moduleRemoved"
	// EventLink: the link to the hub went up or down, or a sync answer came (Link).
	EventLink = "link"
	// EventOutbox: the outbox's depth changed (Outbox).
	EventOutbox = "outbox"
	// EventMessages: the message queue changed (Messages), at most once a
	// second; only from a daemon that routes messages.
	EventMessages = "messages"
	// EventError is the last line of a stream that the daemon ends (Error):
	// the client read too slowly, or the daemon is stopping. Watch also
	// ends its channel with one when the stream breaks.
	EventError = "error"
)

// Link is the daemon's link to its hub.
type Link struct {
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since"` // when Connected last changed
	LastSync  time.Time `json:"lastSync,omitzero"`
	// LastError is why the hub was last unreachable (kept once it is back),
	// LastErrorAt when that was first seen; "" when it never was.
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
}

// Event is one line of GET /events (NDJSON). The first is a snapshot of
// the state; each after it is one change, with the new state of what
// changed.
type Event struct {
	Type string    `json:"type"`
	Time time.Time `json:"time"`
	// Modules are every module, by name (snapshot).
	Modules []Module `json:"modules,omitzero"`
	// Module is the module's new status (module).
	Module *Module `json:"module,omitempty"`
	// Name is the module removed (moduleRemoved).
	Name   string  `json:"name,omitempty"`
	Link   *Link   `json:"link,omitempty"`   // snapshot, link
	Outbox *Outbox `json:"outbox,omitempty"` // snapshot, outbox
	// Messages is the message queue (snapshot, messages), nil when the
	// daemon routes no messages.
	Messages *MessageQueue `json:"messages,omitempty"`
	Error    string        `json:"error,omitempty"` // error
}

// Watch follows the daemon's events (GET /events) until ctx is done or the
// stream ends, then closes the channel. The first event is a snapshot of the
// state, the rest are changes. When the stream ends for another reason than
// ctx (the daemon stopped, or dropped this client for reading too slowly),
// the last event is an EventError saying why. The caller must read the
// channel until it is closed, or cancel ctx.
func (c *Client) Watch(ctx context.Context) (<-chan Event, error) {
	resp, err := c.do(ctx, http.MethodGet, "/events", nil)
	if err != nil {
		return nil, err
	}
	ch := make(chan Event, 16)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		send := func(ev Event) bool {
			select {
			case ch <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			var ev Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				send(Event{Type: EventError, Time: time.Now().UTC(), Error: fmt.Sprintf("read the daemon's events: %v", err)})
				return
			}
			if !send(ev) || ev.Type == EventError {
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		err := sc.Err()
		if err == nil {
			err = errors.New("the daemon ended the stream")
		}
		send(Event{Type: EventError, Time: time.Now().UTC(), Error: fmt.Sprintf("the daemon's events on %s: %v", c.socket, err)})
	}()
	return ch, nil
}
