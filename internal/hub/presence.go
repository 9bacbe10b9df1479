package hub

import (
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/registry"
)

// defaultPresenceGrace is how long a device counts as connected after its
// last request ended: a daemon starts its next long poll at once, and one
// that lost its link stops showing as connected this long after.
const defaultPresenceGrace = 10 * time.Second

// presence keeps what IoT Hub calls a device's connection state: a device is
// connected while it holds a sync (or did within presenceGrace), and its
// last activity is its last request. It lives in memory: after a restart of
// the hub a device shows connected again as soon as it syncs.
type presence struct {
	now   func() time.Time
	grace time.Duration
	mu    sync.Mutex
	dev   map[string]*link
	// changed, when set, is told of each device whose connection state
	// changed (the operators' change stream): connected at its first
	// activity, disconnected grace after its last.
	changed func(id string)
}

type link struct {
	holds int         // syncs in flight
	first time.Time   // when the current connection began
	last  time.Time   // the device's last activity
	timer *time.Timer // checks, grace after the last activity, whether the device is gone
}

func newPresence(now func() time.Time, grace time.Duration) *presence {
	if grace <= 0 {
		grace = defaultPresenceGrace
	}
	return &presence{now: now, grace: grace, dev: map[string]*link{}}
}

func (p *presence) get(id string) *link {
	l, ok := p.dev[id]
	if !ok {
		l = &link{}
		p.dev[id] = l
	}
	return l
}

// connected reports l's state at now and since when it holds.
func (l *link) connected(now time.Time, grace time.Duration) (bool, time.Time) {
	if l.holds > 0 || now.Sub(l.last) < grace {
		return true, l.first
	}
	return false, l.last.Add(grace)
}

// begin records that device id started a sync.
func (p *presence) begin(id string) {
	p.mu.Lock()
	now := p.now().UTC()
	l := p.get(id)
	was, _ := l.connected(now, p.grace)
	if !was {
		l.first = now
	}
	l.holds++
	l.last = now
	p.mu.Unlock()
	if !was && p.changed != nil {
		p.changed(id)
	}
}

// end records that device id's sync ended.
func (p *presence) end(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.get(id)
	l.holds--
	l.last = p.now().UTC()
	if l.holds == 0 && l.timer == nil && p.changed != nil {
		l.timer = time.AfterFunc(p.grace, func() { p.expire(id) })
	}
}

// expire runs grace after device id's last activity ended: it tells of
// the disconnection, or, when the device was active since, checks again
// at the end of the new grace.
func (p *presence) expire(id string) {
	p.mu.Lock()
	l, ok := p.dev[id]
	if !ok {
		p.mu.Unlock()
		return // deleted
	}
	l.timer = nil
	now := p.now().UTC()
	if l.holds > 0 {
		p.mu.Unlock()
		return // the sync's end sets the next check
	}
	if c, _ := l.connected(now, p.grace); c {
		l.timer = time.AfterFunc(l.last.Add(p.grace).Sub(now), func() { p.expire(id) })
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	p.changed(id)
}

// touch records other activity of device id (an upload).
func (p *presence) touch(id string) {
	p.begin(id)
	p.end(id)
}

// forget drops what is known of a device that was deleted.
func (p *presence) forget(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l, ok := p.dev[id]; ok && l.holds == 0 {
		if l.timer != nil {
			l.timer.Stop()
		}
		delete(p.dev, id)
	}
}

// state returns device id's connection state, or ok false when the device
// has not been seen since the hub started.
func (p *presence) state(id string) (state string, since, last time.Time, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, seen := p.dev[id]
	if !seen {
		return "", time.Time{}, time.Time{}, false
	}
	c, since := l.connected(p.now().UTC(), p.grace)
	if c {
		return "Connected", since, l.last, true
	}
	return "Disconnected", since, l.last, true
}

// device fills d's connection state, connection time and last activity.
func (p *presence) device(d *registry.Device) {
	if s, since, last, ok := p.state(d.DeviceID); ok {
		d.ConnectionState, d.ConnectionStateUpdatedTime, d.LastActivityTime = s, since, last
	}
}

// module fills m's: the device's system modules ($edgeAgent and $edgeHub,
// which are the daemon) are connected when the device is; other modules
// reach the hub only through the daemon and keep what the registry holds.
func (p *presence) module(m *registry.Module) {
	if m.ModuleID != registry.AgentModule && m.ModuleID != registry.HubModule {
		return
	}
	if s, since, last, ok := p.state(m.DeviceID); ok {
		m.ConnectionState, m.ConnectionStateUpdatedTime, m.LastActivityTime = s, since, last
	}
}

// connectedCount returns how many devices are connected now.
func (p *presence) connectedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now().UTC()
	n := 0
	for _, l := range p.dev {
		if c, _ := l.connected(now, p.grace); c {
			n++
		}
	}
	return n
}

// connectionState is the connectionState of a device (moduleID "") or
// module now, as its twin and identity show it.
func (h *Hub) connectionState(deviceID, moduleID string) string {
	if moduleID == "" {
		d := registry.Device{DeviceID: deviceID, ConnectionState: "Disconnected"}
		h.presence.device(&d)
		return d.ConnectionState
	}
	m := registry.Module{DeviceID: deviceID, ModuleID: moduleID, ConnectionState: "Disconnected"}
	h.presence.module(&m)
	return m.ConnectionState
}
