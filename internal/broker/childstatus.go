package broker

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// ChildStatus is a child device's link to the broker, for outpost status.
type ChildStatus struct {
	DeviceID  string
	Connected bool
	Since     time.Time // when it connected, or disconnected
	// LastActivity is when the broker last read a packet from it (a
	// request, a message, a ping); zero when never since the daemon
	// started.
	LastActivity time.Time
}

// ChildLinks returns the child devices that connected since the daemon
// started, sorted by device id.
func (b *Broker) ChildLinks() []ChildStatus {
	kids := b.allChildren()
	out := make([]ChildStatus, 0, len(kids))
	for _, m := range kids {
		m.mu.Lock()
		st := ChildStatus{DeviceID: m.id, Connected: m.sess != nil, Since: m.since.UTC()}
		m.mu.Unlock()
		st.LastActivity = b.activity.last(m.id)
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b ChildStatus) int { return strings.Compare(a.DeviceID, b.DeviceID) })
	return out
}

// activity is when the broker last read a packet of each client id (a
// child's is its device id): a hook of its own, which only looks.
type activity struct {
	mqtt.HookBase
	now   func() time.Time
	times sync.Map // client id → *atomic.Int64 (unix nanoseconds)
}

func (a *activity) ID() string { return "outpost-activity" }

func (a *activity) Provides(b byte) bool { return b == mqtt.OnPacketRead }

func (a *activity) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	v, ok := a.times.Load(cl.ID)
	if !ok {
		v, _ = a.times.LoadOrStore(cl.ID, new(atomic.Int64))
	}
	v.(*atomic.Int64).Store(a.now().UnixNano())
	return pk, nil
}

// last is when a packet of clientID was last read; zero when never.
func (a *activity) last(clientID string) time.Time {
	v, ok := a.times.Load(clientID)
	if !ok {
		return time.Time{}
	}
	return time.Unix(0, v.(*atomic.Int64).Load()).UTC()
}
