package deployment

import (
	"encoding/json"
	"strings"
)

// The system modules of IoT Edge, $edgeAgent and $edgeHub, are the outpost
// daemon itself. Their twins keep what IoT Edge keeps in them, so that IoT
// Edge's tools read a device's deployment as they read IoT Edge's: the
// $edgeAgent desired properties hold the modules (and systemModules), the
// $edgeHub desired properties the routes and the store-and-forward settings.

// HubSchemaVersion is the $edgeHub schemaVersion written for a manifest that
// has no $edgeHub part (a native manifest).
const HubSchemaVersion = "1.1"

// DefaultTimeToLiveSecs is IoT Edge's default storeAndForwardConfiguration.timeToLiveSecs.
const DefaultTimeToLiveSecs = 7200

// SystemImage is the image named in the systemModules written for a
// manifest that gives none: the daemon, which is both system modules.
const SystemImage = "outpost"

var (
	hubFields       = []string{"schemaVersion", "routes", "storeAndForwardConfiguration", "mqttBroker"}
	hubRouteFields  = []string{"route", "priority", "timeToLiveSecs"}
	hubSchemaFormat = agentSchemaVersion
)

// HubDesired renders the desired properties of the device's $edgeHub twin:
// the manifest's $edgeHub part as given, or, for a manifest without one
// (native manifests), schemaVersion HubSchemaVersion, no routes and IoT
// Edge's default store-and-forward time to live.
func (m *Manifest) HubDesired() []byte {
	if m.Hub != nil {
		return m.Hub
	}
	return DefaultHubDesired()
}

// DefaultHubDesired is the $edgeHub desired properties of a manifest
// without an $edgeHub part.
func DefaultHubDesired() []byte {
	b, _ := json.Marshal(map[string]any{
		"schemaVersion":                HubSchemaVersion,
		"routes":                       map[string]any{},
		"storeAndForwardConfiguration": map[string]any{"timeToLiveSecs": DefaultTimeToLiveSecs},
	})
	return b
}

// defaultSystemModules is the systemModules of $edgeAgent for a manifest
// that gives none: both are the daemon.
func defaultSystemModules() json.RawMessage {
	settings := map[string]string{"image": SystemImage, "createOptions": "{}"}
	b, _ := json.Marshal(map[string]any{
		"edgeAgent": map[string]any{"type": "docker", "settings": settings},
		"edgeHub":   map[string]any{"type": "docker", "status": StatusRunning, "restartPolicy": RestartAlways, "settings": settings},
	})
	return b
}

// systemModules reads $edgeAgent's systemModules, kept as given: outpost
// does not run them (the daemon is both), which a manifest is told once.
func (c *checker) systemModules(v *value, path string) json.RawMessage {
	if v.kind == kindNull || !c.isObject(v, path) {
		return nil
	}
	if !c.skipDollar && len(v.fields) > 0 {
		c.warnf(path, "system modules (edgeAgent, edgeHub) are not run; the outpost daemon is the agent and the hub (its module broker routes messages)")
	}
	return appendJSON(nil, c.withoutDollar(v))
}

// withoutDollar returns v without the members whose key starts with '$'
// ($metadata, $version of a twin) at any level, when reading a twin.
func (c *checker) withoutDollar(v *value) *value {
	if !c.skipDollar || v.kind != kindObject {
		return v
	}
	cp := *v
	cp.fields = nil
	for _, f := range v.fields {
		if strings.HasPrefix(f.key, "$") {
			continue
		}
		f.val = c.withoutDollar(f.val)
		cp.fields = append(cp.fields, f)
	}
	return &cp
}

// edgeHub checks the desired properties of $edgeHub and returns them as
// given (compact JSON): schemaVersion, routes (IoT Edge's string form and
// schema 1.1's {route, priority, timeToLiveSecs}), storeAndForwardConfiguration
// {timeToLiveSecs}. It warns about what the daemon does not do yet.
func (c *checker) edgeHub(desired *value, path string) json.RawMessage {
	fs := c.members(desired, path, hubFields, false)
	if fs == nil {
		return nil
	}
	c.schemaVersion(fs, path, desired.line, hubSchemaFormat.MatchString, `"1.0", "1.1", "1.2" or another 1.x`)
	if f, ok := fs["routes"]; !absent(f, ok) {
		c.routes(f.val, join(path, "routes"))
	}
	if f, ok := fs["storeAndForwardConfiguration"]; !absent(f, ok) {
		p := join(path, "storeAndForwardConfiguration")
		if saf := c.members(f.val, p, []string{"timeToLiveSecs"}, false); saf != nil {
			c.nonNegative(saf, "timeToLiveSecs", p)
		}
	}
	if _, ok := fs["mqttBroker"]; ok {
		c.warnf(join(path, "mqttBroker"), "not supported yet; the daemon's broker serves the IoT Hub twin topics only")
	}
	return c.desired(desired, path)
}

// routes checks $edgeHub's routes: name → "FROM … INTO …" or {route,
// priority 0–9, timeToLiveSecs}.
func (c *checker) routes(v *value, path string) {
	if !c.isObject(v, path) || len(v.fields) == 0 {
		return
	}
	for _, f := range v.fields {
		p := join(path, f.key)
		switch f.val.kind {
		case kindString:
			if strings.TrimSpace(f.val.str) == "" {
				c.errorf(f.val.line, p, "empty; write a route such as FROM /messages/* INTO $upstream")
			} else {
				c.route(f.key, f.val.str, f.val.line, p)
			}
		case kindObject:
			fs := c.members(f.val, p, hubRouteFields, false)
			if fs == nil {
				continue
			}
			if r, ok := fs["route"]; absent(r, ok) {
				c.errorf(f.val.line, join(p, "route"), "missing; write {\"route\": \"FROM … INTO …\", \"priority\": 0, \"timeToLiveSecs\": 7200}")
			} else if text := c.str(fs, "route", p); text == "" && r.val.kind == kindString {
				c.errorf(r.val.line, join(p, "route"), "empty; write a route such as FROM /messages/* INTO $upstream")
			} else if text != "" {
				c.route(f.key, text, r.val.line, join(p, "route"))
			}
			if n, ok := c.nonNegative(fs, "priority", p); ok && n > 9 {
				c.errorf(fs["priority"].val.line, join(p, "priority"), "%d is out of range: a route's priority is from 0 (highest) to 9", n)
			}
			c.nonNegative(fs, "timeToLiveSecs", p)
		default:
			c.errorf(f.val.line, p, "is %s; a route is a string (FROM … INTO …) or an object {route, priority, timeToLiveSecs}", f.val.kind)
		}
	}
}

// nonNegative reads an optional whole number ≥ 0.
func (c *checker) nonNegative(m map[string]field, key, path string) (int64, bool) {
	f, ok := m[key]
	if absent(f, ok) {
		return 0, false
	}
	p := join(path, key)
	var n int64
	if f.val.kind != kindNumber || json.Unmarshal([]byte(f.val.str), &n) != nil || n < 0 {
		c.errorf(f.val.line, p, "%s is not a whole number ≥ 0", f.val.text)
		return 0, false
	}
	return n, true
}
