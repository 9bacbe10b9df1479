package deployment

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/outpost-edge/outpost/internal/twin"
)

// Parse reads a native or an IoT Edge manifest, in YAML or JSON (told apart
// by content), validates it and returns it with warnings for the parts
// outpost does not support yet. filename is used in messages only. Every
// problem found is returned in one [*ValidationError].
func Parse(data []byte, filename string) (*Manifest, []string, error) {
	c := &checker{file: filename}
	root, serr := decodeDocument(data)
	if serr != nil {
		return nil, nil, &ValidationError{File: filename, Problems: []Problem{{Message: serr.msg, Line: serr.line, Column: serr.column}}}
	}
	if root.kind != kindObject {
		c.errorf(root.line, "", "a manifest must be a mapping with schemaVersion and modules (native) or an object with modulesContent (IoT Edge), not %s", root.kind)
		return nil, nil, c.err()
	}
	var m *Manifest
	if isIoTEdge(root) {
		m = c.decodeIoTEdge(root)
	} else {
		m = c.decodeNative(root)
	}
	c.checkRouteModules(m)
	if err := c.err(); err != nil {
		return nil, c.warnings, err
	}
	// Everything was checked field by field; what is left is whether the
	// whole fits in the $edgeAgent twin.
	if _, err := m.AgentDesired(); err != nil {
		if ve, ok := err.(*ValidationError); ok {
			ve.File = filename
			return nil, c.warnings, ve
		}
		return nil, c.warnings, err
	}
	return m, c.warnings, nil
}

// FromAgentDesired reads the desired properties of a device's $edgeAgent twin
// (the daemon does this), or of an IoT Edge $edgeAgent twin. Members whose
// key starts with '$' ($metadata, $version) are ignored. It validates as
// Parse does and returns warnings for what is not supported. Modules have no
// Desired, which lives in their own twins; SchemaVersion is the one in the
// twin. So FromAgentDesired(m.AgentDesired()) equals m but for those two.
func FromAgentDesired(desired []byte) (*Manifest, []string, error) {
	c := &checker{skipDollar: true}
	if !looksLikeJSON(desired) {
		return nil, nil, &ValidationError{Problems: []Problem{{Message: "the $edgeAgent desired properties must be a JSON object"}}}
	}
	root, serr := decodeJSON(desired)
	if serr != nil {
		return nil, nil, &ValidationError{Problems: []Problem{{Message: serr.msg, Line: serr.line, Column: serr.column}}}
	}
	if !c.isObject(root, "") {
		return nil, nil, c.err()
	}
	m := c.decodeAgent(root, "")
	if err := c.err(); err != nil {
		// A twin's JSON has no lines a reader could look up: the paths say where.
		var ve *ValidationError
		if errors.As(err, &ve) {
			for i := range ve.Problems {
				ve.Problems[i].Line, ve.Problems[i].Column = 0, 0
			}
		}
		return nil, c.warnings, err
	}
	return m, c.warnings, nil
}

// The $edgeAgent desired document, in the shape of IoT Edge's $edgeAgent.
type agentDesired struct {
	SchemaVersion string                 `json:"schemaVersion"`
	Runtime       agentRuntime           `json:"runtime"`
	SystemModules json.RawMessage        `json:"systemModules"`
	Modules       map[string]agentModule `json:"modules"`
}

type agentRuntime struct {
	Type     string               `json:"type"`
	Settings agentRuntimeSettings `json:"settings"`
}

type agentRuntimeSettings struct {
	RegistryCredentials map[string]agentCredential `json:"registryCredentials,omitempty"`
}

type agentCredential struct {
	Address  string `json:"address"`
	Username string `json:"username"`
	Password string `json:"password"`
}

type agentModule struct {
	Version       string              `json:"version,omitempty"`
	Type          string              `json:"type"`
	Status        string              `json:"status"`
	RestartPolicy string              `json:"restartPolicy"`
	StartupOrder  int64               `json:"startupOrder"`
	Settings      map[string]string   `json:"settings"` // image, createOptions, createOptions01, …
	Env           map[string]envValue `json:"env,omitempty"`
}

type envValue struct {
	Value string `json:"value"`
}

// AgentDesired renders the desired properties of the device's $edgeAgent twin
// in the shape of IoT Edge's $edgeAgent: schemaVersion as the manifest gave
// it (AgentSchemaVersion for a native one), runtime {type: "docker",
// settings: {registryCredentials}}, systemModules as given (or naming the
// daemon, SystemImage), and per module
// {version, type: "docker", status, restartPolicy, startupOrder, settings:
// {image, createOptions[, createOptions01, …]}, env: {NAME: {value}}}.
// Empty Status and RestartPolicy are
// written as their defaults. It validates m first and checks that the result
// fits the twin limits. Apply it by replacing $edgeAgent's desired properties: a
// merge patch would keep modules the deployment removed.
func (m *Manifest) AgentDesired() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	doc := agentDesired{
		SchemaVersion: orDefault(m.AgentSchema, AgentSchemaVersion),
		Runtime:       agentRuntime{Type: "docker"},
		SystemModules: m.SystemModules,
		Modules:       map[string]agentModule{},
	}
	if doc.SystemModules == nil {
		doc.SystemModules = defaultSystemModules()
	}
	if len(m.RegistryCredentials) > 0 {
		doc.Runtime.Settings.RegistryCredentials = map[string]agentCredential{}
		for name, cr := range m.RegistryCredentials {
			doc.Runtime.Settings.RegistryCredentials[name] = agentCredential(cr)
		}
	}
	for id, mod := range m.Modules {
		am := agentModule{
			Version:       mod.Version,
			Type:          "docker",
			Status:        orDefault(mod.Status, DefaultStatus),
			RestartPolicy: orDefault(mod.RestartPolicy, DefaultRestartPolicy),
			StartupOrder:  mod.StartupOrder,
			Settings:      map[string]string{"image": mod.Image},
		}
		opts, _ := marshalCreateOptions(mod.CreateOptions) // checked by Validate
		if opts != "" {
			for i, chunk := range splitCreateOptions(opts) {
				am.Settings[chunkKey(i)] = chunk
			}
		}
		if len(mod.Env) > 0 {
			am.Env = map[string]envValue{}
			for k, v := range mod.Env {
				am.Env[k] = envValue{v}
			}
		}
		doc.Modules[id] = am
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("render $edgeAgent desired properties: %w", err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if err := checkDesired(b); err != nil {
		msg := err.Error()
		if len(b) > twin.MaxDesiredSize {
			msg = fmt.Sprintf("the deployment takes %d bytes as $edgeAgent desired properties; a twin holds at most %d: deploy fewer modules or shorten their createOptions and env", len(b), twin.MaxDesiredSize)
		}
		return nil, &ValidationError{Problems: []Problem{{Message: msg}}}
	}
	return b, nil
}

// orDefault returns s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Validate checks a manifest built in code by the rules Parse applies, and
// returns a [*ValidationError] listing every problem. Empty Status and
// RestartPolicy are allowed and mean the defaults; SchemaVersion is not
// checked.
func (m *Manifest) Validate() error {
	c := &checker{}
	for _, name := range sortedKeys(m.RegistryCredentials) {
		cr := m.RegistryCredentials[name]
		p := join("registryCredentials", name)
		if msg := checkTwinKey(name); msg != "" {
			c.errorf(0, p, "credential name %s", msg)
		}
		for _, f := range []struct{ name, v string }{{"address", cr.Address}, {"username", cr.Username}, {"password", cr.Password}} {
			if f.v == "" {
				c.errorf(0, join(p, f.name), "missing; a registry credential needs address, username and password")
			} else if msg := checkString(f.v); msg != "" {
				c.errorf(0, join(p, f.name), "%s", msg)
			}
		}
	}
	for _, id := range sortedKeys(m.Modules) {
		mod := m.Modules[id]
		p := join("modules", id)
		if msg := checkModuleID(id); msg != "" {
			c.errorf(0, p, "%s", msg)
			continue
		}
		if mod.Name != "" && mod.Name != id {
			c.errorf(0, join(p, "name"), "%q differs from the module's key %q", mod.Name, id)
		}
		if msg := checkString(mod.Image); msg != "" {
			c.errorf(0, join(p, "image"), "%s", msg)
		} else if msg := checkImage(mod.Image); msg != "" {
			c.errorf(0, join(p, "image"), "%s", msg)
		}
		if msg := checkString(mod.Version); msg != "" {
			c.errorf(0, join(p, "version"), "%s", msg)
		}
		if mod.Status != "" {
			if msg := oneOf(mod.Status, statuses); msg != "" {
				c.errorf(0, join(p, "status"), "%s", msg)
			}
		}
		if mod.RestartPolicy != "" {
			if msg := oneOf(mod.RestartPolicy, restartPolicies); msg != "" {
				c.errorf(0, join(p, "restartPolicy"), "%s", msg)
			}
		}
		if mod.StartupOrder < 0 || mod.StartupOrder > MaxStartupOrder {
			c.errorf(0, join(p, "startupOrder"), "%d is not a whole number from 0 to %d", mod.StartupOrder, MaxStartupOrder)
		}
		for _, k := range sortedKeys(mod.Env) {
			ep := join(join(p, "env"), k)
			if msg := checkEnvName(k); msg != "" {
				c.errorf(0, ep, "%s", msg)
			} else if msg := checkString(mod.Env[k]); msg != "" {
				c.errorf(0, ep, "%s", msg)
			}
		}
		if opts, err := marshalCreateOptions(mod.CreateOptions); err != nil {
			c.errorf(0, join(p, "createOptions"), "%v", err)
		} else if len(opts) > MaxCreateOptionsSize {
			c.errorf(0, join(p, "createOptions"), "is %d bytes as compact JSON; at most %d fit in the $edgeAgent twin", len(opts), MaxCreateOptionsSize)
		}
		if mod.Desired != nil {
			if err := checkDesired(mod.Desired); err != nil {
				path, reason := twinProblem(err, join(p, "desired"))
				c.errorf(0, path, "%s", reason)
			}
		}
	}
	return c.err()
}
