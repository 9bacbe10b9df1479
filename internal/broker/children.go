package broker

import (
	"fmt"
	"strings"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/syncer"
)

// What a child device may do here (a session whose moduleState has child
// set): the twin requests of a module, on its device twin
// ($iothub/twin/GET/?$rid=…, $iothub/twin/PATCH/properties/reported/?$rid=…,
// answers on $iothub/twin/res/#, desired changes on
// $iothub/twin/PATCH/properties/desired/#), and subscribe to
// $iothub/methods/POST/#. Anything else it publishes closes its connection,
// with a log line naming it and the topic.

// childFilters are the filters a child device may subscribe to.
var childFilters = []string{filterResponses, filterDesired, filterMethods}

// childMayPublish reports why a child may not publish to topic, or "".
func childMayPublish(topic string) string {
	if strings.HasPrefix(topic, topicGet) || strings.HasPrefix(topic, topicPatch) || leafMayPublish(topic) {
		return ""
	}
	return fmt.Sprintf("topic %q is not one a child device may publish to here: only %s?$rid=…, %s?$rid=…, method answers on %s{status}/?$rid=… and its telemetry on devices/{deviceId}/messages/events/", topic, topicGet, topicPatch, topicMethodRes)
}

func (b *Broker) allChildren() []*moduleState {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*moduleState, 0, len(b.children))
	for _, m := range b.children {
		out = append(out, m)
	}
	return out
}

// childChanged follows a change of the children: their identities (check
// the connected ones again) or one's twin (send its desired changes).
func (b *Broker) childChanged(c syncer.Change) {
	if c.Children {
		b.recheckChildren()
	}
	if c.DeviceID == "" {
		return
	}
	b.mu.Lock()
	m := b.children[c.DeviceID]
	b.mu.Unlock()
	if m != nil {
		b.catchUp(m, c.DesiredVersion)
	}
}

// recheckChildren closes the connections of child devices that are no
// longer children of this device, are disabled, or whose token no longer
// verifies (keys rotated), and forgets children that are gone.
func (b *Broker) recheckChildren() {
	kids, err := b.cfg.Twins.Children()
	if err != nil {
		b.log.Warn("broker: read the child devices", "err", err)
		return
	}
	byID := make(map[string]hubapi.SyncChild, len(kids))
	for _, c := range kids {
		byID[c.DeviceID] = c
	}
	b.forgetGoneChildren(byID)
	for _, m := range b.allChildren() {
		c, ok := byID[m.id]
		m.mu.Lock()
		s := m.sess
		m.gone = !ok
		m.mu.Unlock()
		if !ok && s == nil {
			b.mu.Lock()
			m.mu.Lock()
			if m.sess == nil && b.children[m.id] == m {
				delete(b.children, m.id)
				b.forget(m)
			}
			m.mu.Unlock()
			b.mu.Unlock()
			continue
		}
		if s == nil {
			continue
		}
		var err error
		switch {
		case !ok:
			err = refuse(connackNotAuthorized, "device %q is no longer a child of this edge device %q", m.id, b.cfg.DeviceID)
		case !c.Enabled():
			err = refuse(connackNotAuthorized, "child device %q was disabled at the hub", m.id)
		default:
			_, err = b.verifyChildToken(s.token, c)
		}
		if err != nil {
			b.log.Warn("broker: closing a child device's connection: its identity changed", "child", m.id, "remote", s.remote, "reason", err.Error())
			s.cl.Stop(fmt.Errorf("identity changed: %w", err))
		}
	}
}

// forgetGoneChildren removes what is kept of children not in have and not
// connected.
func (b *Broker) forgetGoneChildren(have map[string]hubapi.SyncChild) {
	if b.cfg.Store == nil {
		return
	}
	recs, err := b.cfg.Store.List(savedChildPrefix)
	if err != nil {
		b.log.Warn("broker: list the kept child sessions", "err", err)
		return
	}
	for _, rec := range recs {
		id := strings.TrimPrefix(rec.Key, savedChildPrefix)
		if _, ok := have[id]; ok {
			continue
		}
		b.mu.Lock()
		m := b.children[id]
		b.mu.Unlock()
		if m == nil {
			b.forget(&moduleState{id: id, child: true})
		}
	}
}
