package moduleclient

import (
	"encoding/json"
	"net/url"
	"reflect"
	"strconv"
	"strings"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// OnDesired calls f with each change of the module's desired properties,
// in order and once each: the patch (a JSON merge patch: nil removes a
// property; without "$version") and the desired properties' new $version.
// Changes made while the client was disconnected (or the daemon down, or
// the hub unreachable) come as one patch once it is back. f is called from
// one goroutine of the client's, one change at a time; a slow f delays the
// next change, not the client. Read Twin for the desired properties as
// they are when the module starts; OnDesired gives the changes after the
// client connected.
func (c *Client) OnDesired(f func(patch map[string]any, version int64)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.handlers = append(c.handlers, f)
}

// onDesired takes a desired patch from the broker:
// $iothub/twin/PATCH/properties/desired/?$version={n}, body the patch with
// "$version".
func (c *Client) onDesired(_ mqtt.Client, m mqtt.Message) {
	var patch map[string]any
	if err := json.Unmarshal(m.Payload(), &patch); err != nil || patch == nil {
		c.log.Warn("ignored a desired patch that is not a JSON object", "topic", m.Topic(), "err", err)
		return
	}
	p := properties(patch)
	if p.Version == 0 {
		p.Version = versionOf(m.Topic())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.desiredKnown && p.Version <= c.desiredVersion {
		return // seen (a twin read got it first)
	}
	if !c.desiredKnown {
		c.desired = map[string]any{}
	}
	c.desired = mergePatch(c.desired, clone(p.Values).(map[string]any))
	c.desiredVersion, c.desiredKnown = p.Version, true
	c.enqueue(p.Values, p.Version)
}

// versionOf reads $version from a topic's property bag (…/?$version=n).
func versionOf(topic string) int64 {
	_, bag, ok := strings.Cut(topic, "?")
	if !ok {
		return 0
	}
	q, _ := url.ParseQuery(bag)
	v, _ := strconv.ParseInt(q.Get("$version"), 10, 64)
	return v
}

// catchUp takes the desired properties from a twin read: the first one
// sets what the module knows; a later one with a newer $version (after a
// reconnect, or a Twin call that got ahead of the patches) delivers what
// changed as one patch.
func (c *Client) catchUp(d Properties) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.desiredKnown {
		c.desired, c.desiredVersion, c.desiredKnown = clone(d.Values).(map[string]any), d.Version, true
		return
	}
	if d.Version <= c.desiredVersion {
		return
	}
	patch := diff(c.desired, d.Values)
	c.desired, c.desiredVersion = clone(d.Values).(map[string]any), d.Version
	if len(patch) > 0 {
		c.enqueue(patch, d.Version)
	}
}

// enqueue queues a change for the handlers; c.mu is held.
func (c *Client) enqueue(patch map[string]any, version int64) {
	c.queue = append(c.queue, desiredPatch{patch: patch, version: version})
	c.queued.Signal()
}

// deliver calls the handlers with each queued change, in order, until
// Close.
func (c *Client) deliver() {
	for {
		c.mu.Lock()
		for len(c.queue) == 0 && !c.closed {
			c.queued.Wait()
		}
		if c.closed {
			c.mu.Unlock()
			return
		}
		p := c.queue[0]
		c.queue[0] = desiredPatch{}
		c.queue = c.queue[1:]
		hs := c.handlers
		c.mu.Unlock()
		for i, h := range hs {
			patch := p.patch
			if i < len(hs)-1 {
				patch = clone(patch).(map[string]any)
			}
			h(patch, p.version)
		}
	}
}

// mergePatch applies a JSON merge patch (RFC 7386) to doc.
func mergePatch(doc, patch map[string]any) map[string]any {
	if doc == nil {
		doc = map[string]any{}
	}
	for k, v := range patch {
		switch v := v.(type) {
		case nil:
			delete(doc, k)
		case map[string]any:
			sub, _ := doc[k].(map[string]any)
			doc[k] = mergePatch(sub, v)
		default:
			doc[k] = v
		}
	}
	return doc
}

// diff is the merge patch that turns from into to.
func diff(from, to map[string]any) map[string]any {
	patch := map[string]any{}
	for k, v := range to {
		old, ok := from[k]
		if ok && reflect.DeepEqual(old, v) {
			continue
		}
		om, oIsMap := old.(map[string]any)
		nm, nIsMap := v.(map[string]any)
		if ok && oIsMap && nIsMap {
			patch[k] = diff(om, nm)
			continue
		}
		patch[k] = clone(v)
	}
	for k := range from {
		if _, ok := to[k]; !ok {
			patch[k] = nil
		}
	}
	return patch
}

// clone deep-copies a value decoded from JSON.
func clone(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = clone(e)
		}
		return m
	case []any:
		s := make([]any, len(v))
		for i, e := range v {
			s[i] = clone(e)
		}
		return s
	}
	return v
}
