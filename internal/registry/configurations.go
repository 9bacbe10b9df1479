package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/outpost-edge/outpost/internal/deployment"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/query"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

// Configuration is an IoT Hub configuration: an automatic deployment when its
// content has modulesContent.
type Configuration = hubapi.Configuration

const configurationPrefix = "configurations/"

func configurationKey(id string) string { return configurationPrefix + id }

// desiredPrefix is how a modulesContent member names (part of) a twin's
// desired properties: "properties.desired" or "properties.desired.a.b".
const desiredPrefix = "properties.desired"

// CreateConfiguration stores a new configuration; the hub starts applying
// it to the devices it targets.
func (r *Registry) CreateConfiguration(c Configuration) (Configuration, error) {
	if _, err := compileConfiguration(&c); err != nil {
		return Configuration{}, err
	}
	now := r.now().Format(twin.TimeLayout)
	c.CreatedTimeUtc, c.LastUpdatedTimeUtc = now, now
	b, err := marshalConfiguration(c)
	if err != nil {
		return Configuration{}, err
	}
	v, err := r.st.Put(configurationKey(c.ID), b, 0)
	if errors.Is(err, store.ErrConflict) {
		return Configuration{}, fmt.Errorf("%w: configuration %q; to change it, send its etag in If-Match", ErrExists, c.ID)
	}
	if err != nil {
		return Configuration{}, err
	}
	c.ETag = ETagOf(v)
	return c, nil
}

// UpdateConfiguration changes a configuration's target condition, priority,
// labels and metric queries, if its etag still matches ifMatch ("*" for
// any). Its content cannot change, as in IoT Hub.
func (r *Registry) UpdateConfiguration(c Configuration, ifMatch string) (Configuration, error) {
	cur, version, err := r.configuration(c.ID)
	if err != nil {
		return Configuration{}, err
	}
	expect, err := versionOf(ifMatch)
	if err != nil {
		return Configuration{}, err
	}
	if expect == store.Any {
		expect = version
	}
	if !sameContent(cur.Content, c.Content) {
		return Configuration{}, fmt.Errorf("%w: configuration %q: content cannot be changed once created (as in IoT Hub); create a configuration with a new id and this content, then delete %q", ErrInvalid, c.ID, c.ID)
	}
	if _, err := compileConfiguration(&c); err != nil {
		return Configuration{}, err
	}
	c.CreatedTimeUtc = cur.CreatedTimeUtc
	c.LastUpdatedTimeUtc = r.now().Format(twin.TimeLayout)
	b, err := marshalConfiguration(c)
	if err != nil {
		return Configuration{}, err
	}
	v, err := r.st.Put(configurationKey(c.ID), b, expect)
	if err != nil {
		return Configuration{}, storeErr(err, fmt.Sprintf("configuration %q", c.ID))
	}
	c.ETag = ETagOf(v)
	return c, nil
}

// GetConfiguration returns a stored configuration, without metric results
// (see ConfigurationMetrics).
func (r *Registry) GetConfiguration(id string) (Configuration, error) {
	c, v, err := r.configuration(id)
	c.ETag = ETagOf(v)
	return c, err
}

func (r *Registry) configuration(id string) (Configuration, int64, error) {
	rec, err := r.st.Get(configurationKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return Configuration{}, 0, &NotFoundError{Kind: "Configuration", Name: id}
	}
	if err != nil {
		return Configuration{}, 0, err
	}
	c, err := decodeRecord[Configuration](rec)
	return c, rec.Version, err
}

// ListConfigurations returns every configuration, sorted by id.
func (r *Registry) ListConfigurations() ([]Configuration, error) {
	recs, err := r.st.List(configurationPrefix)
	if err != nil {
		return nil, err
	}
	out := make([]Configuration, 0, len(recs))
	for _, rec := range recs {
		c, err := decodeRecord[Configuration](rec)
		if err != nil {
			return nil, err
		}
		c.ETag = ETagOf(rec.Version)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Configuration) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// DeleteConfiguration removes a configuration. Devices it was applied to
// keep what they run until another automatic deployment targets them.
func (r *Registry) DeleteConfiguration(id, ifMatch string) error {
	expect, err := versionOf(ifMatch)
	if err != nil {
		return err
	}
	if _, _, err := r.configuration(id); err != nil {
		return err
	}
	return storeErr(r.st.Delete(configurationKey(id), expect), fmt.Sprintf("configuration %q", id))
}

// marshalConfiguration is the stored form: no etag, no metric results.
func marshalConfiguration(c Configuration) ([]byte, error) {
	c.ETag = ""
	c.SystemMetrics = nil
	if c.Metrics != nil {
		c.Metrics = &hubapi.ConfigurationMetrics{Queries: c.Metrics.Queries}
	}
	return json.Marshal(c)
}

func sameContent(a, b hubapi.ConfigurationContent) bool {
	for _, p := range [][2]json.RawMessage{{a.ModulesContent, b.ModulesContent}, {a.ModuleContent, b.ModuleContent}, {a.DeviceContent, b.DeviceContent}} {
		var x, y any
		json.Unmarshal(p[0], &x)
		json.Unmarshal(p[1], &y)
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

// compiled is a configuration ready to evaluate and apply.
type compiled struct {
	Configuration
	all     bool      // targetCondition "*": every device
	cond    condition // nil with all unset: no device
	edge    bool      // an automatic deployment (modulesContent)
	device  bool      // an automatic device configuration (deviceContent)
	module  bool      // an automatic module configuration (moduleContent): cond is over module twins
	reads   twinReads // for a module configuration: the parts of a module twin cond reads
	layered bool      // modulesContent sets paths under properties.desired, not $edgeAgent's whole desired
	// patch is deviceContent or moduleContent as a merge patch of the
	// twin's desired properties.
	patch []byte
	// twins holds, for each twin of modulesContent, its writes in order:
	// a path below properties.desired (none: the whole) and its value.
	twins map[string][]twinWrite
}

type twinWrite struct {
	path  []string
	value any
}

// compileConfiguration validates c, filling in defaults, with errors that
// name the JSON path at fault.
func compileConfiguration(c *Configuration) (*compiled, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: configuration %q: %s", ErrInvalid, c.ID, fmt.Sprintf(format, args...))
	}
	if err := identity.ValidateDeviceID(c.ID); err != nil {
		return nil, fmt.Errorf("%w: configuration id: %v", ErrInvalid, strings.Replace(err.Error(), "device id", "id", 1))
	}
	if strings.IndexFunc(c.ID, unicode.IsUpper) >= 0 {
		return nil, fmt.Errorf("%w: configuration id %q: upper-case letters are not allowed (IoT Hub's rule); use %q", ErrInvalid, c.ID, strings.ToLower(c.ID))
	}
	if c.SchemaVersion == "" {
		c.SchemaVersion = "1.0"
	}
	if c.Priority < 0 {
		return nil, bad("priority %d: must be 0 or more (higher wins)", c.Priority)
	}
	cc := &compiled{Configuration: *c}
	n := 0
	for _, raw := range []json.RawMessage{c.Content.ModulesContent, c.Content.ModuleContent, c.Content.DeviceContent} {
		if given(raw) {
			n++
		}
	}
	if n != 1 {
		return nil, bad("content: set exactly one of modulesContent (an IoT Edge deployment), moduleContent or deviceContent")
	}
	cc.module, cc.device = given(c.Content.ModuleContent), given(c.Content.DeviceContent)
	if err := cc.compileTarget(); err != nil {
		return nil, bad("%v", err)
	}
	if c.Metrics != nil {
		for name, q := range c.Metrics.Queries {
			if strings.TrimSpace(q) == "" {
				return nil, bad("metrics.queries.%s: empty query; give a query such as SELECT deviceId FROM devices WHERE …", name)
			}
			if _, err := query.Parse(q); err != nil {
				return nil, bad("metrics.queries.%s %q: %v", name, q, err)
			}
		}
	}
	if cc.module {
		patch, err := compileDesiredContent(c.Content.ModuleContent, "content.moduleContent", "module configuration")
		if err != nil {
			return nil, bad("%v", err)
		}
		cc.patch = patch
		return cc, nil
	}
	if cc.device {
		patch, err := compileDesiredContent(c.Content.DeviceContent, "content.deviceContent", "device configuration")
		if err != nil {
			return nil, bad("%v", err)
		}
		cc.patch = patch
		return cc, nil
	}
	cc.edge = true // modulesContent, the one left
	if err := cc.compileModulesContent(); err != nil {
		return nil, bad("%v", err)
	}
	return cc, nil
}

// given reports whether a content member is set (neither absent nor null).
func given(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

// compileDesiredContent reads deviceContent or moduleContent (at JSON path
// name), IoT Hub's {"properties.desired": {…}} or
// {"properties.desired.a.b": value, …}, into one merge patch of a twin's
// desired properties, and checks it against the twin rules (depth, size,
// key names) on an empty twin.
func compileDesiredContent(raw json.RawMessage, name, kind string) ([]byte, error) {
	var dc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &dc); err != nil {
		return nil, fmt.Errorf("%s: want an object of %q or %q paths: %v", name, desiredPrefix, desiredPrefix+".…", err)
	}
	if len(dc) == 0 {
		return nil, fmt.Errorf("%s: empty; set %q (the desired properties it sets) or %q paths", name, desiredPrefix, desiredPrefix+".name")
	}
	var writes []twinWrite
	for _, key := range slices.Sorted(maps.Keys(dc)) {
		p := name + "." + key
		if key != desiredPrefix && !strings.HasPrefix(key, desiredPrefix+".") {
			return nil, fmt.Errorf("%s: unknown member; a %s sets %q (an object) or %q paths", p, kind, desiredPrefix, desiredPrefix+".name")
		}
		var v any
		if err := json.Unmarshal(dc[key], &v); err != nil {
			return nil, fmt.Errorf("%s: %v", p, err)
		}
		var path []string
		if key != desiredPrefix {
			path = strings.Split(strings.TrimPrefix(key, desiredPrefix+"."), ".")
			if slices.Contains(path, "") {
				return nil, fmt.Errorf("%s: an empty name in the path", p)
			}
		} else if _, ok := v.(map[string]any); !ok {
			return nil, fmt.Errorf("%s: must be an object", p)
		}
		writes = append(writes, twinWrite{path: path, value: v})
	}
	// The whole desired first, then paths, shorter ones first.
	slices.SortStableFunc(writes, func(a, b twinWrite) int { return len(a.path) - len(b.path) })
	patch := map[string]any{}
	for _, w := range writes {
		if len(w.path) == 0 {
			patch = w.value.(map[string]any)
			continue
		}
		patch = setPath(patch, w.path, w.value)
	}
	b, err := json.Marshal(patch)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	if _, err := twin.New("device", "", time.Unix(0, 0)).PatchDesired(b, time.Unix(0, 0)); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	return b, nil
}

// compileModulesContent reads modulesContent into twin writes and checks
// that it makes a valid deployment: a base one by itself, a layered one on
// top of an empty base.
func (cc *compiled) compileModulesContent() error {
	var mc map[string]map[string]json.RawMessage
	if err := json.Unmarshal(cc.Content.ModulesContent, &mc); err != nil {
		return fmt.Errorf("content.modulesContent: want an object of twins, each an object of %q or %q paths: %v", desiredPrefix, desiredPrefix+".…", err)
	}
	cc.twins = map[string][]twinWrite{}
	for _, id := range slices.Sorted(maps.Keys(mc)) {
		for _, key := range slices.Sorted(maps.Keys(mc[id])) {
			p := "content.modulesContent." + id + "." + key
			if key != desiredPrefix && !strings.HasPrefix(key, desiredPrefix+".") {
				return fmt.Errorf("%s: unknown member; a twin's content is %q (all of its desired properties) or %q paths (layered)", p, desiredPrefix, desiredPrefix+".name")
			}
			var v any
			if err := json.Unmarshal(mc[id][key], &v); err != nil {
				return fmt.Errorf("%s: %v", p, err)
			}
			var path []string
			if key != desiredPrefix {
				path = strings.Split(strings.TrimPrefix(key, desiredPrefix+"."), ".")
			} else if _, ok := v.(map[string]any); !ok {
				return fmt.Errorf("%s: must be an object", p)
			}
			cc.twins[id] = append(cc.twins[id], twinWrite{path: path, value: v})
		}
		// The whole desired first, then paths, shorter ones first.
		slices.SortStableFunc(cc.twins[id], func(a, b twinWrite) int { return len(a.path) - len(b.path) })
	}
	agent := cc.twins["$edgeAgent"]
	cc.layered = len(agent) == 0 || len(agent[0].path) > 0
	base := &compiled{}
	if cc.layered {
		system := func(image string) map[string]any {
			return map[string]any{"type": "docker", "settings": map[string]any{"image": image, "createOptions": "{}"}}
		}
		base.twins = map[string][]twinWrite{
			"$edgeAgent": {{value: map[string]any{
				"schemaVersion": "1.1",
				"runtime":       map[string]any{"type": "docker", "settings": map[string]any{}},
				"systemModules": map[string]any{"edgeAgent": system("mcr.microsoft.com/azureiotedge-agent:1.5"), "edgeHub": system("mcr.microsoft.com/azureiotedge-hub:1.5")},
				"modules":       map[string]any{},
			}}},
			"$edgeHub": {{value: map[string]any{
				"schemaVersion":                "1.1",
				"routes":                       map[string]any{},
				"storeAndForwardConfiguration": map[string]any{"timeToLiveSecs": 7200},
			}}},
		}
	}
	_, _, err := compose([]*compiled{base, cc})
	return err
}

// compose merges automatic deployments, lowest priority first, into one
// IoT Edge deployment and parses it as POST applyConfigurationContent does.
// It returns the deployment's JSON too (the same deployments give the same
// bytes).
func compose(list []*compiled) (*deployment.Manifest, []byte, error) {
	merged := map[string]any{}
	for _, cc := range list {
		for id, writes := range cc.twins {
			for _, w := range writes {
				if len(w.path) == 0 {
					merged[id] = w.value
					continue
				}
				doc, _ := merged[id].(map[string]any)
				merged[id] = setPath(doc, w.path, w.value)
			}
		}
	}
	mc := map[string]any{}
	for id, doc := range merged {
		mc[id] = map[string]any{desiredPrefix: doc}
	}
	b, err := json.Marshal(map[string]any{"modulesContent": mc})
	if err != nil {
		return nil, nil, err
	}
	m, _, err := deployment.Parse(b, "")
	var ve *deployment.ValidationError
	if errors.As(err, &ve) {
		msgs := make([]string, len(ve.Problems))
		for i, p := range ve.Problems {
			msgs[i] = "content." + p.Path + ": " + p.Message
		}
		return nil, nil, errors.New(strings.Join(msgs, "; "))
	}
	if err != nil {
		return nil, nil, err
	}
	return m, b, nil
}

// setPath returns doc with value at path, copying the objects on the way so
// that the documents doc shares with others stay as they are.
func setPath(doc map[string]any, path []string, value any) map[string]any {
	out := make(map[string]any, len(doc)+1)
	maps.Copy(out, doc)
	if len(path) == 1 {
		out[path[0]] = value
		return out
	}
	child, _ := out[path[0]].(map[string]any)
	out[path[0]] = setPath(child, path[1:], value)
	return out
}
