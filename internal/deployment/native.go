package deployment

var (
	nativeTopFields    = []string{"schemaVersion", "registryCredentials", "modules", "routes", "storeAndForwardConfiguration"}
	nativeModuleFields = []string{"image", "version", "status", "restartPolicy", "startupOrder", "env", "createOptions", "desired"}
)

// decodeNative reads a native manifest. Unknown fields are errors.
func (c *checker) decodeNative(root *value) *Manifest {
	m := &Manifest{Modules: map[string]Module{}}
	top := c.members(root, "", nativeTopFields, true)
	if top == nil {
		return m
	}
	m.SchemaVersion = c.schemaVersion(top, "", root.line, func(s string) bool { return s == NativeSchemaVersion }, `"`+NativeSchemaVersion+`"`)
	if f, ok := top["registryCredentials"]; ok {
		m.RegistryCredentials = c.credentials(f.val, "registryCredentials", true)
	}
	c.nativeHub(top, m)
	f, ok := top["modules"]
	if absent(f, ok) {
		return m // no modules: the deployment removes every module
	}
	if !c.isObject(f.val, "modules") {
		return m
	}
	for _, mf := range f.val.fields {
		path := join("modules", mf.key)
		if msg := checkModuleID(mf.key); msg != "" {
			c.errorf(mf.line, path, "%s", msg)
			continue
		}
		if mod, ok := c.nativeModule(mf, path); ok {
			m.Modules[mf.key] = mod
		}
	}
	return m
}

func (c *checker) nativeModule(mf field, path string) (Module, bool) {
	mod := Module{Name: mf.key}
	fs := c.members(mf.val, path, nativeModuleFields, true)
	if fs == nil {
		return mod, false
	}
	mod.Image = c.image(fs, path, mf.line)
	mod.Version = c.version(fs, path)
	mod.Status = c.enum(fs, "status", path, DefaultStatus, statuses)
	mod.RestartPolicy = c.enum(fs, "restartPolicy", path, DefaultRestartPolicy, restartPolicies)
	mod.StartupOrder = c.startupOrder(fs, path)
	if f, ok := fs["env"]; !absent(f, ok) {
		mod.Env = c.nativeEnv(f.val, join(path, "env"))
	}
	if f, ok := fs["createOptions"]; ok {
		mod.CreateOptions = c.createOptions(f.val, join(path, "createOptions"))
	}
	if f, ok := fs["desired"]; ok {
		mod.Desired = c.desired(f.val, join(path, "desired"))
	}
	return mod, true
}

// nativeEnv reads env: NAME -> value, a value being a string or a number or
// boolean taken as written.
func (c *checker) nativeEnv(v *value, path string) map[string]string {
	if !c.isObject(v, path) {
		return nil
	}
	env := map[string]string{}
	for _, f := range v.fields {
		p := join(path, f.key)
		if !c.envName(f, p) {
			continue
		}
		if s, ok := c.envValue(f.val, p); ok {
			env[f.key] = s
		}
	}
	if len(env) == 0 {
		return nil
	}
	return env
}
