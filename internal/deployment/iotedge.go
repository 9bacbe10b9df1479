package deployment

import (
	"regexp"
	"slices"
	"strings"
)

// Azure IoT Edge deployment manifests are read as they are. What outpost
// does not support yet is reported as a warning naming its path.

// isIoTEdge reports whether root looks like an IoT Edge manifest in one of
// the forms Parse accepts: {"modulesContent": …}, {"content":
// {"modulesContent": …}} (a configuration, as layered deployments and
// `az iot edge deployment` use) or the modulesContent object itself.
func isIoTEdge(root *value) bool {
	if root.kind != kindObject {
		return false
	}
	if root.get("modulesContent") != nil || root.get("$edgeAgent") != nil {
		return true
	}
	content := root.get("content")
	return content != nil && content.get("modulesContent") != nil
}

// configurationFields are the members of an IoT Hub configuration around
// its content; they target devices and count them, which means nothing for
// a deployment to one device.
var configurationFields = []string{"id", "schemaVersion", "labels", "targetCondition", "priority", "metrics", "systemMetrics", "etag", "createdTimeUtc", "lastUpdatedTimeUtc"}

func (c *checker) decodeIoTEdge(root *value) *Manifest {
	mc, prefix := root, ""
	switch {
	case root.get("modulesContent") != nil:
		mc, prefix = root.get("modulesContent"), "modulesContent"
		c.ignoreOthers(root, "", "modulesContent", "$schema-template has no meaning in a deployment")
	case root.get("content") != nil && root.get("$edgeAgent") == nil:
		content := root.get("content")
		for _, f := range root.fields {
			switch {
			case f.key == "content":
			case contains(configurationFields, f.key):
				c.warnf(f.key, "ignored; outpost applies a deployment to one device, so a configuration's targeting and metrics do not apply")
			default:
				c.warnf(f.key, "unknown field; ignored")
			}
		}
		mc, prefix = content.get("modulesContent"), "content.modulesContent"
		c.ignoreOthers(content, "content", "modulesContent", "")
	}
	m := &Manifest{Modules: map[string]Module{}}
	if !c.isObject(mc, prefix) {
		return m
	}
	agent := mc.get("$edgeAgent")
	agentPath := join(prefix, "$edgeAgent")
	if agent == nil {
		c.errorf(mc.line, agentPath, "missing; an IoT Edge manifest sets the modules in $edgeAgent's properties.desired")
		return m
	}
	desired := c.section(agent, agentPath)
	desiredPath := join(agentPath, "properties.desired")
	if desired == nil {
		if agent.kind == kindObject {
			c.errorf(agent.line, desiredPath, "missing; $edgeAgent's properties.desired lists the modules")
		}
		return m
	}
	m = c.decodeAgent(desired, desiredPath)

	type twinSection struct {
		id, path string
		desired  *value
	}
	var sections []twinSection
	for _, f := range mc.fields {
		p := join(prefix, f.key)
		switch {
		case f.key == "$edgeAgent":
		case f.key == "$edgeHub":
			if d := c.section(f.val, p); d != nil {
				m.Hub = c.edgeHub(d, join(p, "properties.desired"))
			}
		case strings.HasPrefix(f.key, "$"):
			c.warnf(p, "system module %s is not supported; ignored", f.key)
		default:
			d := c.section(f.val, p)
			if d == nil {
				c.warnf(p, "no properties.desired; ignored")
				continue
			}
			sections = append(sections, twinSection{f.key, p, d})
		}
	}
	for _, s := range sections {
		mod, ok := m.Modules[s.id]
		if !ok {
			c.warnf(s.path, "no module %s in $edgeAgent's modules; its desired properties are ignored", s.id)
			continue
		}
		mod.Desired = c.desired(s.desired, join(s.path, "properties.desired"))
		m.Modules[s.id] = mod
	}
	return m
}

// ignoreOthers warns about the members of v other than keep.
func (c *checker) ignoreOthers(v *value, path, keep, templateNote string) {
	for _, f := range v.fields {
		if f.key == keep {
			continue
		}
		if f.key == "$schema-template" && templateNote != "" {
			c.warnf(join(path, f.key), "ignored; %s", templateNote)
			continue
		}
		c.warnf(join(path, f.key), "unknown field; ignored")
	}
}

// section returns the desired properties of a module's twin section in a
// manifest: its "properties.desired" object, with the members that layered
// deployments write as "properties.desired.a.b" merged in. It returns nil
// when there are none.
func (c *checker) section(v *value, path string) *value {
	if !c.isObject(v, path) {
		return nil
	}
	var desired *value
	if d := v.get("properties.desired"); d != nil {
		p := join(path, "properties.desired")
		if d.kind == kindNull {
			d = &value{kind: kindObject, line: d.line}
		}
		if !c.isObject(d, p) {
			return nil
		}
		cp := *d
		desired = &cp
	}
	for _, f := range v.fields {
		p := join(path, f.key)
		switch {
		case f.key == "properties.desired":
		case strings.HasPrefix(f.key, "properties.desired."):
			if desired == nil {
				desired = &value{kind: kindObject, line: f.line}
			}
			parts := strings.Split(strings.TrimPrefix(f.key, "properties.desired."), ".")
			if !setPath(desired, parts, f) {
				c.errorf(f.line, p, "sets a property that another member of this section sets too")
			}
		default:
			c.warnf(p, "only properties.desired is read; ignored")
		}
	}
	return desired
}

// setPath sets the member at parts below obj to f's value, creating objects
// on the way. It copies what it changes, as values may be shared (YAML
// aliases). It reports false when the member exists already or a value on
// the way is not an object.
func setPath(obj *value, parts []string, f field) bool {
	for i, part := range parts {
		idx := obj.index(part)
		last := i == len(parts)-1
		if last {
			if idx >= 0 || part == "" {
				return false
			}
			obj.fields = append(slices.Clip(obj.fields), field{key: part, line: f.line, val: f.val})
			return true
		}
		if idx < 0 {
			child := &value{kind: kindObject, line: f.line}
			obj.fields = append(slices.Clip(obj.fields), field{key: part, line: f.line, val: child})
			obj = child
			continue
		}
		if obj.fields[idx].val.kind != kindObject {
			return false
		}
		obj.fields = slices.Clone(obj.fields)
		cp := *obj.fields[idx].val
		obj.fields[idx].val = &cp
		obj = &cp
	}
	return false
}

var (
	agentFields        = []string{"schemaVersion", "runtime", "systemModules", "modules"}
	runtimeFields      = []string{"type", "settings"}
	agentModuleFields  = []string{"version", "type", "status", "restartPolicy", "startupOrder", "imagePullPolicy", "env", "settings"}
	agentSchemaVersion = regexp.MustCompile(`^1\.[0-9]+$`)
)

// decodeAgent reads the desired properties of $edgeAgent (from a manifest
// or from the twin). path is the path of desired itself.
func (c *checker) decodeAgent(desired *value, path string) *Manifest {
	m := &Manifest{Modules: map[string]Module{}}
	top := c.members(desired, path, agentFields, false)
	if top == nil {
		return m
	}
	m.SchemaVersion = c.schemaVersion(top, path, desired.line, agentSchemaVersion.MatchString, `"1.0", "1.1" or another 1.x`)
	m.AgentSchema = m.SchemaVersion
	if f, ok := top["runtime"]; !absent(f, ok) {
		m.RegistryCredentials = c.runtime(f.val, join(path, "runtime"))
	}
	if f, ok := top["systemModules"]; !absent(f, ok) {
		m.SystemModules = c.systemModules(f.val, join(path, "systemModules"))
	}
	f, ok := top["modules"]
	if absent(f, ok) {
		return m
	}
	mp := join(path, "modules")
	if !c.isObject(f.val, mp) {
		return m
	}
	for _, mf := range f.val.fields {
		if c.skipDollar && strings.HasPrefix(mf.key, "$") {
			continue
		}
		p := join(mp, mf.key)
		if msg := checkModuleID(mf.key); msg != "" {
			c.errorf(mf.line, p, "%s", msg)
			continue
		}
		if mod, ok := c.agentModule(mf, p); ok {
			m.Modules[mf.key] = mod
		}
	}
	return m
}

// runtime reads runtime {type, settings {minDockerVersion, loggingOptions,
// registryCredentials}} and returns the credentials.
func (c *checker) runtime(v *value, path string) map[string]RegistryCredential {
	fs := c.members(v, path, runtimeFields, false)
	if fs == nil {
		return nil
	}
	if t := c.str(fs, "type", path); t != "" && t != "docker" {
		c.warnf(join(path, "type"), "runtime type %q is not supported; its settings are read as docker's", t)
	}
	f, ok := fs["settings"]
	if absent(f, ok) {
		return nil
	}
	sp := join(path, "settings")
	settings := c.members(f.val, sp, []string{"minDockerVersion", "loggingOptions", "registryCredentials"}, false)
	if settings == nil {
		return nil
	}
	if s := c.str(settings, "minDockerVersion", sp); s != "" {
		c.warnf(join(sp, "minDockerVersion"), "ignored; the outpost daemon picks and checks its own runtime")
	}
	if s := c.str(settings, "loggingOptions", sp); s != "" {
		c.warnf(join(sp, "loggingOptions"), "not supported yet; ignored")
	}
	if f, ok := settings["registryCredentials"]; ok {
		return c.credentials(f.val, join(sp, "registryCredentials"), false)
	}
	return nil
}

func (c *checker) agentModule(mf field, path string) (Module, bool) {
	mod := Module{Name: mf.key}
	fs := c.members(mf.val, path, agentModuleFields, false)
	if fs == nil {
		return mod, false
	}
	mod.Version = c.version(fs, path)
	if t := c.str(fs, "type", path); t != "" && t != "docker" {
		c.warnf(join(path, "type"), "module type %q is not supported; the module is run as a docker-type module", t)
	}
	mod.Status = c.enum(fs, "status", path, DefaultStatus, statuses)
	mod.RestartPolicy = c.enum(fs, "restartPolicy", path, DefaultRestartPolicy, restartPolicies)
	mod.StartupOrder = c.startupOrder(fs, path)
	switch p := c.str(fs, "imagePullPolicy", path); p {
	case "", "on-create":
	case "never":
		c.warnf(join(path, "imagePullPolicy"), `"never" is not supported yet; images are pulled when the module is created`)
	default:
		c.warnf(join(path, "imagePullPolicy"), "%q is not one of on-create, never; ignored", p)
	}
	if f, ok := fs["env"]; !absent(f, ok) {
		mod.Env = c.agentEnv(f.val, join(path, "env"))
	}
	sp := join(path, "settings")
	f, ok := fs["settings"]
	if absent(f, ok) {
		c.errorf(mf.line, join(sp, "image"), "%s", checkImage(""))
		return mod, true
	}
	if !c.isObject(f.val, sp) {
		return mod, true
	}
	settings := map[string]field{}
	for _, g := range f.val.fields {
		switch {
		case c.skipDollar && strings.HasPrefix(g.key, "$"):
		case g.key == "image":
			settings[g.key] = g
		case isChunkKey(g.key):
		case g.key == "digest":
			c.warnf(join(sp, g.key), "not supported yet; ignored (pin the image with image@sha256:… instead)")
		default:
			c.unknown(g, join(sp, g.key), []string{"image", "createOptions"}, false)
		}
	}
	mod.Image = c.image(settings, sp, f.line)
	mod.CreateOptions = c.createOptions(c.joinCreateOptions(f.val, sp), join(sp, "createOptions"))
	return mod, true
}

// agentEnv reads IoT Edge's env: {"NAME": {"value": "v"}}.
func (c *checker) agentEnv(v *value, path string) map[string]string {
	if !c.isObject(v, path) {
		return nil
	}
	env := map[string]string{}
	for _, f := range v.fields {
		if c.skipDollar && strings.HasPrefix(f.key, "$") {
			continue
		}
		p := join(path, f.key)
		if !c.envName(f, p) {
			continue
		}
		fs := c.members(f.val, p, []string{"value"}, false)
		if fs == nil {
			continue
		}
		val, ok := fs["value"]
		if absent(val, ok) {
			c.errorf(f.val.line, join(p, "value"), `missing; write {"value": "…"}`)
			continue
		}
		if s, ok := c.envValue(val.val, join(p, "value")); ok {
			env[f.key] = s
		}
	}
	if len(env) == 0 {
		return nil
	}
	return env
}
