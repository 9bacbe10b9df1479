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
// with a log line naming it and the topic. Its telemetry on
// devices/{deviceId}/messages/events/ and its method answers are let
// through here and checked where they are taken (leaf_messages.go: its own
// device id only, answers to its own calls only).

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
	b.forgetGone(savedChildPrefix, true, func(id string) bool { _, ok := byID[id]; return ok })
	b.recheck(b.allChildren(), func(m *moduleState, token string) (bool, error) {
		c, ok := byID[m.id]
		switch {
		case !ok:
			return true, refuse(connackNotAuthorized, "device %q is no longer a child of this edge device %q", m.id, b.cfg.DeviceID)
		case !c.Enabled():
			return false, refuse(connackNotAuthorized, "child device %q was disabled at the hub", m.id)
		}
		_, err := b.verifyChildToken(token, c)
		return false, err
	})
}
