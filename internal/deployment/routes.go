package deployment

import (
	"encoding/json"
	"errors"
	"slices"

	"github.com/outpost-edge/outpost/internal/route"
)

// routeModule is a module a route names, where.
type routeModule struct {
	line   int
	path   string
	name   string // the route's
	module string
}

// route parses one route's text (internal/route), reporting a parse
// error with the route's column, and notes the modules it names.
func (c *checker) route(name, text string, line int, path string) {
	r, err := route.Parse(name, text)
	if err != nil {
		var re *route.Error
		if errors.As(err, &re) {
			c.errorf(line, path, "column %d: %s", re.Column, re.Msg)
		} else {
			c.errorf(line, path, "%v", err)
		}
		return
	}
	for _, m := range []string{r.Source.Module, r.Sink.Module} {
		if m != "" {
			c.routeModules = append(c.routeModules, routeModule{line: line, path: path, name: name, module: m})
		}
	}
}

// checkRouteModules warns of routes that name a module m does not deploy
// (a warning: a layered deployment may add it; the daemon reports 400 in
// $edgeHub's lastDesiredStatus if the device ends up without it).
func (c *checker) checkRouteModules(m *Manifest) {
	for _, rm := range c.routeModules {
		if _, ok := m.Modules[rm.module]; !ok {
			names := make([]string, 0, len(m.Modules))
			for n := range m.Modules {
				names = append(names, n)
			}
			slices.Sort(names)
			c.warnf(rm.path, "route %q names module %q, which the manifest does not deploy (its modules: %v); the device reports 400 in $edgeHub's lastDesiredStatus unless another deployment adds it", rm.name, rm.module, names)
		}
	}
}

// nativeHub reads a native manifest's routes: (name → route, as in
// $edgeHub) and storeAndForwardConfiguration: {timeToLiveSecs} (as in
// $edgeHub, default DefaultTimeToLiveSecs) into the $edgeHub desired
// properties. A manifest with neither leaves m.Hub nil: the default.
func (c *checker) nativeHub(top map[string]field, m *Manifest) {
	routes, hasRoutes := top["routes"]
	hasRoutes = !absent(routes, hasRoutes)
	saf, hasSAF := top["storeAndForwardConfiguration"]
	hasSAF = !absent(saf, hasSAF)
	if !hasRoutes && !hasSAF {
		return
	}
	hub := map[string]any{"schemaVersion": HubSchemaVersion, "routes": map[string]any{}}
	ttl := int64(DefaultTimeToLiveSecs)
	if hasSAF {
		const p = "storeAndForwardConfiguration"
		if fs := c.members(saf.val, p, []string{"timeToLiveSecs"}, true); fs != nil {
			if n, ok := c.nonNegative(fs, "timeToLiveSecs", p); ok {
				ttl = n
			}
		}
	}
	hub["storeAndForwardConfiguration"] = map[string]any{"timeToLiveSecs": ttl}
	if hasRoutes {
		c.routes(routes.val, "routes")
		if routes.val.kind == kindObject {
			hub["routes"] = json.RawMessage(appendJSON(nil, routes.val))
		}
	}
	m.Hub, _ = json.Marshal(hub)
}
