package deployment

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/suggest"
	"github.com/outpost-edge/outpost/internal/twin"
)

const fixtures = "../../fixtures/manifests"

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t *testing.T, data []byte, name string) (*Manifest, []string) {
	t.Helper()
	m, warnings, err := Parse(data, name)
	if err != nil {
		t.Fatalf("Parse(%s): %v", name, err)
	}
	return m, warnings
}

// withoutTwinOnly returns a copy of m without what the $edgeAgent twin does not
// hold: each module's Desired, the $edgeHub part and the schema version of the
// source; with what AgentDesired writes for an AgentSchema or SystemModules
// that m leaves out.
func withoutTwinOnly(m *Manifest) *Manifest {
	c := *m
	c.SchemaVersion, c.Hub = "", nil
	c.AgentSchema = orDefault(c.AgentSchema, AgentSchemaVersion)
	if c.SystemModules == nil {
		c.SystemModules = defaultSystemModules()
	}
	c.Modules = map[string]Module{}
	for id, mod := range m.Modules {
		mod.Desired = nil
		c.Modules[id] = mod
	}
	return &c
}

// checkRoundTrip renders m as $edgeAgent desired properties, checks them
// against the twin limits and reads them back.
func checkRoundTrip(t testing.TB, m *Manifest) []byte {
	t.Helper()
	b, err := m.AgentDesired()
	if err != nil {
		t.Fatalf("AgentDesired: %v", err)
	}
	if _, err := twin.New("dev", "$edgeAgent", twinTime).PatchDesired(b, twinTime); err != nil {
		t.Fatalf("AgentDesired breaks a twin limit: %v\n%s", err, b)
	}
	back, warnings, err := FromAgentDesired(b)
	if err != nil {
		t.Fatalf("FromAgentDesired(AgentDesired()): %v\n%s", err, b)
	}
	for _, w := range warnings {
		// Create options are kept whole, so their unsupported fields are
		// warned about again.
		if !strings.Contains(w, ".settings.createOptions.") {
			t.Errorf("FromAgentDesired(AgentDesired()) warns: %q", w)
		}
	}
	if want := orDefault(m.AgentSchema, AgentSchemaVersion); back.SchemaVersion != want {
		t.Errorf("schemaVersion = %q, want %q (as given)", back.SchemaVersion, want)
	}
	if got, want := withoutTwinOnly(back), withoutTwinOnly(m); !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v\n$edgeAgent: %s", got, want, b)
	}
	return b
}

func TestGoodFixtures(t *testing.T) {
	for _, name := range []string{"iotedge-quickstart.json", "iotedge-createoptions-split.json", "native.yaml"} {
		t.Run(name, func(t *testing.T) {
			m, _ := mustParse(t, readFixture(t, name), name)
			if len(m.Modules) == 0 {
				t.Fatal("no modules")
			}
			checkRoundTrip(t, m)
		})
	}
}

func TestQuickstart(t *testing.T) {
	m, warnings := mustParse(t, readFixture(t, "iotedge-quickstart.json"), "iotedge-quickstart.json")
	want := &Manifest{
		SchemaVersion: "1.1",
		Modules: map[string]Module{
			"SimulatedTemperatureSensor": {
				Name:          "SimulatedTemperatureSensor",
				Image:         "mcr.microsoft.com/azureiotedge-simulated-temperature-sensor:1.5",
				Version:       "1.0",
				Status:        "running",
				RestartPolicy: "always",
				StartupOrder:  2,
				Env:           map[string]string{"MessageCount": "500"},
				CreateOptions: CreateOptions{Raw: json.RawMessage(`{}`)},
				Desired:       json.RawMessage(`{"SendData":true,"SendInterval":5}`),
			},
		},
	}
	if m.AgentSchema != "1.1" || !strings.Contains(string(m.SystemModules), `"image":"mcr.microsoft.com/azureiotedge-hub:1.5"`) {
		t.Errorf("$edgeAgent schemaVersion %q, systemModules %s: not kept as given", m.AgentSchema, m.SystemModules)
	}
	wantHub := `{"schemaVersion":"1.2","routes":{"SimulatedTemperatureSensorToIoTHub":"FROM /messages/modules/SimulatedTemperatureSensor/* INTO $upstream"},"storeAndForwardConfiguration":{"timeToLiveSecs":7200}}`
	if string(m.HubDesired()) != wantHub {
		t.Errorf("HubDesired = %s, want %s", m.HubDesired(), wantHub)
	}
	m.AgentSchema, m.SystemModules, m.Hub = "", nil, nil
	if !reflect.DeepEqual(m, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", m, want)
	}
	const p = "modulesContent.$edgeAgent.properties.desired."
	wantWarnings := []string{
		p + "runtime.settings.minDockerVersion: ",
		p + "systemModules: system modules (edgeAgent, edgeHub) are not run",
	}
	if len(warnings) != len(wantWarnings) {
		t.Errorf("warnings = %q, want %d", warnings, len(wantWarnings))
	}
	for _, w := range wantWarnings {
		if !slices.ContainsFunc(warnings, func(s string) bool { return strings.HasPrefix(s, w) }) {
			t.Errorf("no warning starting %q in %q", w, warnings)
		}
	}
}

func TestNative(t *testing.T) {
	m, warnings := mustParse(t, readFixture(t, "native.yaml"), "native.yaml")
	if got := m.RegistryCredentials; !reflect.DeepEqual(got, map[string]RegistryCredential{
		"myreg": {Address: "myreg.example:5000", Username: "deployer", Password: "not-a-real-password"},
	}) {
		t.Errorf("credentials = %+v", got)
	}
	ts := m.Modules["tempsensor"]
	if ts.Name != "tempsensor" || ts.Version != "1.0" || ts.StartupOrder != 1 {
		t.Errorf("tempsensor = %+v", ts)
	}
	if want := map[string]string{"INTERVAL": "5", "UNITS": "celsius", "VERBOSE": "true"}; !reflect.DeepEqual(ts.Env, want) {
		t.Errorf("env = %v, want %v", ts.Env, want)
	}
	wantOpts := CreateOptions{
		Cmd:        []string{"--port", "8080"},
		Env:        []string{"TZ=UTC"},
		WorkingDir: "/app",
		User:       "1000",
		Labels:     map[string]string{"com.example.role": "sensor"},
		HostConfig: HostConfig{
			Binds:        []string{"/var/lib/tempsensor:/data"},
			PortBindings: map[string][]PortBinding{"8080/tcp": {{HostPort: "8080"}}},
		},
		Raw: json.RawMessage(`{"Cmd":["--port","8080"],"Env":["TZ=UTC"],"WorkingDir":"/app","User":"1000","Labels":{"com.example.role":"sensor"},"ExposedPorts":{"8080/tcp":{}},"HostConfig":{"Binds":["/var/lib/tempsensor:/data"],"PortBindings":{"8080/tcp":[{"HostPort":"8080"}]}}}`),
	}
	if !reflect.DeepEqual(ts.CreateOptions, wantOpts) {
		t.Errorf("createOptions =\n%+v\nwant\n%+v", ts.CreateOptions, wantOpts)
	}
	if got, want := string(ts.Desired), `{"interval":5,"thresholds":{"high":30.5,"low":-10},"enabled":true}`; got != want {
		t.Errorf("desired = %s, want %s", got, want)
	}
	f := m.Modules["filter"]
	if f.Status != DefaultStatus || f.RestartPolicy != RestartOnFailure || f.Version != "" {
		t.Errorf("filter = %+v", f)
	}
	if !reflect.DeepEqual(f.CreateOptions.Entrypoint, []string{"/bin/filter"}) {
		t.Errorf("entrypoint = %q", f.CreateOptions.Entrypoint)
	}
	if want := []string{"modules.filter.createOptions.HostConfig.Privileged: not supported yet; ignored (supported: " + supportedOptions + ")"}; !reflect.DeepEqual(warnings, want) {
		t.Errorf("warnings = %q, want %q", warnings, want)
	}
}

func TestDefaults(t *testing.T) {
	m, _ := mustParse(t, []byte("schemaVersion: \"1.0\"\nmodules:\n  m:\n    image: busybox\n"), "d.yaml")
	got := m.Modules["m"]
	want := Module{Name: "m", Image: "busybox", Status: "running", RestartPolicy: "always", StartupOrder: 4294967295}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for _, src := range []string{"schemaVersion: \"1.0\"\n", "schemaVersion: \"1.0\"\nmodules:\n", `{"schemaVersion": "1.0", "modules": {}}`} {
		m, _ := mustParse(t, []byte(src), "empty")
		if m.Modules == nil || len(m.Modules) != 0 {
			t.Errorf("%q: modules = %v, want empty", src, m.Modules)
		}
		b := checkRoundTrip(t, m)
		if want := `{"schemaVersion":"1.1","runtime":{"type":"docker","settings":{}},"systemModules":` + string(defaultSystemModules()) + `,"modules":{}}`; string(b) != want {
			t.Errorf("AgentDesired = %s, want %s", b, want)
		}
	}
}

func TestCreateOptionsSplit(t *testing.T) {
	m, warnings := mustParse(t, readFixture(t, "iotedge-createoptions-split.json"), "split.json")
	co := m.Modules["sensor"].CreateOptions
	if len(co.Raw) <= 1024 {
		t.Fatalf("raw is %d bytes; the fixture should need three chunks", len(co.Raw))
	}
	if co.WorkingDir != "/app" || co.User != "1000:1000" || len(co.Labels) < 3 ||
		!reflect.DeepEqual(co.HostConfig.PortBindings["9090/tcp"], []PortBinding{{HostIP: "127.0.0.1", HostPort: "9090"}}) {
		t.Errorf("create options = %+v", co)
	}
	if want := []string{"modulesContent.$edgeAgent.properties.desired.modules.sensor.settings.createOptions.HostConfig.LogConfig: not supported yet; ignored (supported: " + supportedOptions + ")"}; !reflect.DeepEqual(warnings, want) {
		t.Errorf("warnings = %q, want %q", warnings, want)
	}
	b := checkRoundTrip(t, m)
	var doc struct {
		Modules map[string]struct{ Settings map[string]string }
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	settings := doc.Modules["sensor"].Settings
	if _, ok := settings["createOptions02"]; !ok {
		t.Errorf("settings = %v, want createOptions, createOptions01 and createOptions02", settings)
	}
}

func TestSplitCreateOptions(t *testing.T) {
	for _, n := range []int{0, 1, 511, 512, 513, 1024, 1025, 5000} {
		s := strings.Repeat("é", n/2) + strings.Repeat("x", n%2) // two-byte runes on odd offsets
		chunks := splitCreateOptions(s)
		if strings.Join(chunks, "") != s {
			t.Fatalf("n=%d: chunks do not join back", n)
		}
		for i, c := range chunks {
			if len(c) > createOptionsChunkSize || (len(c) == 0 && n > 0) {
				t.Errorf("n=%d: chunk %d is %d bytes", n, i, len(c))
			}
			if !strings.HasPrefix(c, "x") && strings.ToValidUTF8(c, "?") != c {
				t.Errorf("n=%d: chunk %d cuts a character", n, i)
			}
		}
	}
}

// bigOptions returns create options of about n bytes.
func bigOptions(n int) json.RawMessage {
	var env []string
	for i := 0; len(strings.Join(env, `","`)) < n; i++ {
		env = append(env, fmt.Sprintf("VAR_%d=%s", i, strings.Repeat("ü", 40)))
	}
	b, _ := json.Marshal(map[string]any{"Env": env})
	return b
}

func TestLongCreateOptions(t *testing.T) {
	opts := bigOptions(6000) // longer than a twin string (4 KiB)
	m := &Manifest{Modules: map[string]Module{"m": {
		Name: "m", Image: "busybox:1", Status: "running", RestartPolicy: "always",
		CreateOptions: CreateOptions{Raw: opts},
	}}}
	// Fill the typed fields as Parse would.
	m2, _, err := FromAgentDesired(mustAgentDesired(t, m))
	if err != nil {
		t.Fatal(err)
	}
	if got := m2.Modules["m"].CreateOptions; string(got.Raw) != string(opts) || len(got.Env) == 0 {
		t.Fatalf("create options did not survive: %d bytes, %d env", len(got.Raw), len(got.Env))
	}
	m.Modules = m2.Modules
	b := checkRoundTrip(t, m)
	var doc struct {
		Modules map[string]struct{ Settings map[string]string }
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	settings := doc.Modules["m"].Settings
	var joined strings.Builder
	for i := 0; ; i++ {
		c, ok := settings[chunkKey(i)]
		if !ok {
			break
		}
		if len(c) > createOptionsChunkSize {
			t.Errorf("chunk %d is %d bytes", i, len(c))
		}
		joined.WriteString(c)
	}
	if joined.String() != string(opts) {
		t.Errorf("chunks do not join to the create options")
	}
	if len(settings) != 1+(len(opts)+createOptionsChunkSize-1)/createOptionsChunkSize && len(settings) != 2+len(opts)/createOptionsChunkSize {
		t.Errorf("%d settings for %d bytes", len(settings), len(opts))
	}

	// The same read from an IoT Edge manifest written by hand.
	var man strings.Builder
	man.WriteString(`{"modulesContent":{"$edgeAgent":{"properties.desired":{"schemaVersion":"1.1","modules":{"m":{"settings":{"image":"busybox:1"`)
	for i, c := range splitCreateOptions(string(opts)) {
		key, _ := json.Marshal(chunkKey(i))
		val, _ := json.Marshal(c)
		fmt.Fprintf(&man, ",%s:%s", key, val)
	}
	man.WriteString(`}}}}}}}`)
	m3, _ := mustParse(t, []byte(man.String()), "long.json")
	if got := m3.Modules["m"].CreateOptions; !reflect.DeepEqual(got, m2.Modules["m"].CreateOptions) {
		t.Errorf("parsed create options differ")
	}
}

func mustAgentDesired(t *testing.T, m *Manifest) []byte {
	t.Helper()
	b, err := m.AgentDesired()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAgentDesiredShape(t *testing.T) {
	m, _ := mustParse(t, readFixture(t, "native.yaml"), "native.yaml")
	b := mustAgentDesired(t, m)
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	mod := doc["modules"].(map[string]any)["tempsensor"].(map[string]any)
	settings := mod["settings"].(map[string]any)
	if mod["type"] != "docker" || mod["status"] != "running" || mod["restartPolicy"] != "always" ||
		mod["startupOrder"] != 1.0 || mod["version"] != "1.0" || settings["image"] != "myreg.example:5000/tempsensor:1.0" {
		t.Errorf("module = %v", mod)
	}
	if _, ok := settings["createOptions"].(string); !ok {
		t.Errorf("createOptions is not a string: %v", settings)
	}
	if env := mod["env"].(map[string]any); !reflect.DeepEqual(env["INTERVAL"], map[string]any{"value": "5"}) {
		t.Errorf("env = %v", env)
	}
	creds := doc["runtime"].(map[string]any)["settings"].(map[string]any)["registryCredentials"]
	if !reflect.DeepEqual(creds, map[string]any{"myreg": map[string]any{"address": "myreg.example:5000", "username": "deployer", "password": "not-a-real-password"}}) {
		t.Errorf("credentials = %v", creds)
	}
	// A native manifest has no system modules: both are the daemon, named as one image.
	sys, _ := doc["systemModules"].(map[string]any)
	for _, name := range []string{"edgeAgent", "edgeHub"} {
		if m, _ := sys[name].(map[string]any); m == nil || m["settings"].(map[string]any)["image"] != SystemImage {
			t.Errorf("systemModules.%s = %v", name, sys[name])
		}
	}
	if string(m.HubDesired()) != `{"routes":{},"schemaVersion":"1.1","storeAndForwardConfiguration":{"timeToLiveSecs":7200}}` {
		t.Errorf("HubDesired of a native manifest = %s", m.HubDesired())
	}
}

func TestFromAgentDesiredTwin(t *testing.T) {
	m, _ := mustParse(t, readFixture(t, "native.yaml"), "native.yaml")
	b := mustAgentDesired(t, m)
	tw := twin.New("dev", "$edgeAgent", twinTime)
	if _, err := tw.ReplaceDesired(b, twinTime); err != nil {
		t.Fatal(err)
	}
	// The desired section as a twin carries it: with $metadata and $version.
	var props struct{ Desired json.RawMessage }
	if err := json.Unmarshal(tw.PropertiesJSON(), &props); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(props.Desired), `"$metadata"`) {
		t.Fatalf("no $metadata in %s", props.Desired)
	}
	back, warnings, err := FromAgentDesired(props.Desired)
	if err != nil {
		t.Fatalf("FromAgentDesired: %v", err)
	}
	if want := []string{"modules.filter.settings.createOptions.HostConfig.Privileged: not supported yet; ignored (supported: " + supportedOptions + ")"}; !slices.Equal(warnings, want) {
		t.Errorf("warnings = %q, want %q", warnings, want)
	}
	if !reflect.DeepEqual(withoutTwinOnly(back), withoutTwinOnly(m)) {
		t.Errorf("got %+v", back)
	}
}

func TestFromAgentDesiredEdgeAgent(t *testing.T) {
	// A real $edgeAgent desired document, as IoT Edge keeps it.
	var doc struct {
		ModulesContent map[string]map[string]json.RawMessage `json:"modulesContent"`
	}
	if err := json.Unmarshal(readFixture(t, "iotedge-quickstart.json"), &doc); err != nil {
		t.Fatal(err)
	}
	m, warnings, err := FromAgentDesired(doc.ModulesContent["$edgeAgent"]["properties.desired"])
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Modules["SimulatedTemperatureSensor"]; !ok || m.SchemaVersion != "1.1" {
		t.Errorf("manifest = %+v", m)
	}
	// The device reads the twin: the systemModules it keeps are no news to it.
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0], "runtime.settings.minDockerVersion: ") {
		t.Errorf("warnings = %q", warnings)
	}
	for _, bad := range []string{``, `[]`, `{"schemaVersion":"1.1","modules":{"m":{}}}`, `{"modules":{}}`, `{"schemaVersion":"1.1"`} {
		if _, _, err := FromAgentDesired([]byte(bad)); err == nil {
			t.Errorf("FromAgentDesired(%q) succeeded", bad)
		}
	}
}

// TestBrokenFixtures checks that each file in broken/ fails with every line
// of its sibling .err file in the error. Add a file and its .err to add a case.
func TestBrokenFixtures(t *testing.T) {
	dir := filepath.Join(fixtures, "broken")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		name := e.Name()
		if filepath.Ext(name) == ".err" {
			continue
		}
		n++
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join(dir, strings.TrimSuffix(name, filepath.Ext(name))+".err"))
			if err != nil {
				t.Fatalf("no .err file: %v", err)
			}
			m, _, err := Parse(data, name)
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", m)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T, want *ValidationError", err)
			}
			for _, line := range strings.Split(strings.TrimSpace(string(want)), "\n") {
				if !strings.Contains(err.Error(), line) {
					t.Errorf("error\n%v\ndoes not contain\n%s", err, line)
				}
			}
		})
	}
	if n < 14 {
		t.Errorf("%d broken fixtures, want at least 14", n)
	}
}

func TestSchemaVersionError(t *testing.T) {
	for _, name := range []string{"bad-schema-version.yaml", "iotedge-bad-schema-version.json"} {
		_, _, err := Parse(readFixture(t, "broken/"+name), name)
		if !errors.Is(err, ErrSchemaVersion) {
			t.Errorf("%s: %v is not ErrSchemaVersion", name, err)
		}
	}
	_, _, err := Parse(readFixture(t, "broken/bad-status.yaml"), "x")
	if errors.Is(err, ErrSchemaVersion) {
		t.Errorf("%v is ErrSchemaVersion", err)
	}
}

func TestManyProblems(t *testing.T) {
	_, _, err := Parse(readFixture(t, "broken/many-problems.yaml"), "many-problems.yaml")
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 4 {
		t.Fatalf("got %v", err)
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != 4 {
		t.Errorf("Error() has %d lines, want one per problem", len(lines))
	}
	p := ve.Problems[0]
	if p.Path != "modules.a.status" || p.Line != 5 {
		t.Errorf("problem = %+v", p)
	}
}

func TestParseForms(t *testing.T) {
	agent := `{"properties.desired":{"schemaVersion":"1.0","modules":{"m":{"settings":{"image":"busybox:1","createOptions":""}}}}}`
	hub := `{"properties.desired":{"schemaVersion":"1.0","routes":{"r":"FROM /messages/* INTO $upstream"}}}`
	cases := []struct {
		name, doc string
		warnings  []string
	}{
		{"wrapped", `{"modulesContent":{"$edgeAgent":` + agent + `,"$edgeHub":` + hub + `}}`, nil},
		{"bare", `{"$edgeAgent":` + agent + `,"$edgeHub":` + hub + `}`, nil},
		{"configuration", `{"id":"d1","priority":10,"targetCondition":"tags.site='x'","content":{"modulesContent":{"$edgeAgent":` + agent + `}}}`,
			[]string{
				"id: ignored; outpost applies a deployment to one device, so a configuration's targeting and metrics do not apply",
				"priority: ignored; outpost applies a deployment to one device, so a configuration's targeting and metrics do not apply",
				"targetCondition: ignored; outpost applies a deployment to one device, so a configuration's targeting and metrics do not apply",
			}},
		{"yaml", "modulesContent:\n  $edgeAgent:\n    properties.desired:\n      schemaVersion: '1.0'\n      modules:\n        m:\n          settings: {image: 'busybox:1'}\n", nil},
		{"yaml-flow", `{modulesContent: {$edgeAgent: {properties.desired: {schemaVersion: '1.0', modules: {m: {settings: {image: 'busybox:1'}}}}}}}`, nil},
		{"layered", `{"modulesContent":{"$edgeAgent":{"properties.desired":{"schemaVersion":"1.0"},"properties.desired.modules.m":{"settings":{"image":"busybox:1"}}},"m":{"properties.desired.a":{"b":1}}}}`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, warnings := mustParse(t, []byte(tc.doc), tc.name)
			if mod, ok := m.Modules["m"]; !ok || mod.Image != "busybox:1" {
				t.Errorf("modules = %+v", m.Modules)
			}
			if !slices.Equal(warnings, tc.warnings) {
				t.Errorf("warnings = %q, want %q", warnings, tc.warnings)
			}
		})
	}
	m, _ := mustParse(t, []byte(cases[5].doc), "layered")
	if got := string(m.Modules["m"].Desired); got != `{"a":{"b":1}}` {
		t.Errorf("layered desired = %s", got)
	}
}

func TestWarnings(t *testing.T) {
	doc := `{"modulesContent":{
	  "$edgeAgent":{"properties.desired":{"schemaVersion":"1.3","runtime":{"type":"docker","settings":{"loggingOptions":"x"}},
	    "modules":{"m":{"type":"wasm","imagePullPolicy":"never","configuration":{"id":"c"},"settings":{"image":"busybox:1","digest":"sha256:x","createoption":"{}"},
	      "env":{"A":{"value":1,"secret":true}}}}}},
	  "$edgeHub":{"properties.desired":{"schemaVersion":"1.2","routes":{},"mqttBroker":{}}},
	  "$other":{"properties.desired":{}},
	  "ghost":{"properties.desired":{"a":1}}}}`
	m, warnings := mustParse(t, []byte(doc), "w.json")
	const p = "modulesContent.$edgeAgent.properties.desired."
	want := []string{
		p + "runtime.settings.loggingOptions: not supported yet; ignored",
		p + `modules.m.type: module type "wasm" is not supported; the module is run as a docker-type module`,
		p + `modules.m.imagePullPolicy: "never" is not supported yet; images are pulled when the module is created`,
		p + "modules.m.env.A.secret: unknown field; ignored",
		p + "modules.m.configuration: unknown field; ignored",
		p + "modules.m.settings.digest: not supported yet; ignored (pin the image with image@sha256:… instead)",
		p + "modules.m.settings.createoption: unknown field; ignored (did you mean createOptions?)",
		"modulesContent.$edgeHub.properties.desired.mqttBroker: not supported yet; the daemon's broker serves the IoT Hub twin topics only",
		"modulesContent.$other: system module $other is not supported; ignored",
		"modulesContent.ghost: no module ghost in $edgeAgent's modules; its desired properties are ignored",
	}
	slices.Sort(warnings)
	slices.Sort(want)
	if !slices.Equal(warnings, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(warnings, "\n"), strings.Join(want, "\n"))
	}
	if got := m.Modules["m"].Env["A"]; got != "1" {
		t.Errorf("env A = %q, want \"1\"", got)
	}
}

func TestProblems(t *testing.T) {
	native := func(module string) string {
		return "schemaVersion: \"1.0\"\nmodules:\n  m:\n    image: busybox:1\n" + module
	}
	cases := []struct{ name, doc, want string }{
		{"empty", "", "the file is empty"},
		{"spaces", " \n\t\n", "the file is empty"},
		{"scalar", "hello", "a manifest must be a mapping"},
		{"json-null", "null", "a manifest must be a mapping"},
		{"trailing", `{"schemaVersion":"1.0"} {}`, "unexpected data after the end of the JSON document"},
		{"json-syntax", "{\n  \"a\": 1,\n  \"b\" 2\n}", "x:3:"},
		{"duplicate-json", `{"schemaVersion":"1.0","schemaVersion":"1.0"}`, `duplicate key "schemaVersion"`},
		{"duplicate-yaml", "schemaVersion: '1.0'\nschemaVersion: '1.0'\n", "x:2: "},
		{"two-docs", "schemaVersion: '1.0'\n---\nschemaVersion: '1.0'\n", "more than one YAML document"},
		{"no-schema", "modules: {}\n", `x:1: schemaVersion: missing; add schemaVersion: "1.0"`},
		{"unknown-top", "schemaVersion: '1.0'\nmodule: {}\n", "x:2: module: unknown field (did you mean modules?)"},
		{"moduleContent", `{"moduleContent": {}}`, "did you mean modulesContent"},
		{"modules-list", "schemaVersion: '1.0'\nmodules: [a]\n", "modules: must be an object (a mapping), not an array"},
		{"system-id", "schemaVersion: '1.0'\nmodules:\n  $edgeAgent: {image: busybox}\n", "reserved for system modules"},
		{"space-id", "schemaVersion: '1.0'\nmodules:\n  a b: {image: busybox}\n", `module id "a b"`},
		{"dollar-id", "schemaVersion: '1.0'\nmodules:\n  a$b: {image: busybox}\n", "'.' and '$' are not allowed"},
		{"image-type", native("")[:len(native(""))-len("busybox:1\n")] + "[1]\n", "modules.m.image: must be a string, not an array"},
		{"image-upstream", "schemaVersion: '1.0'\nmodules:\n  m: {image: '$upstream:443/x:1'}\n", "$upstream"},
		{"image-digest", "schemaVersion: '1.0'\nmodules:\n  m: {image: 'x@sha256:abc'}\n", "not a valid image reference"},
		{"startup-float", native("    startupOrder: 1.5\n"), "1.5 is not a whole number"},
		{"startup-big", native("    startupOrder: 4294967296\n"), "4294967296 is not a whole number"},
		{"env-null", native("    env:\n      A:\n"), "modules.m.env.A: must be a string, not null"},
		{"env-list", native("    env: [A=1]\n"), "modules.m.env: must be an object"},
		{"desired-list", native("    desired: [1]\n"), "modules.m.desired: must be an object"},
		{"desired-dollar", native("    desired: {$x: 1}\n"), "modules.m.desired[\"$x\"]: key must not start with '$'"},
		{"desired-long", native("    desired: {a: '" + strings.Repeat("x", 5000) + "'}\n"), "modules.m.desired.a: string length 5000"},
		{"version-long", native("    version: '" + strings.Repeat("x", 5000) + "'\n"), "modules.m.version: is 5000 bytes long"},
		{"createoptions-string", native("    createOptions: '{\"Cmd\": '\n"), "modules.m.createOptions: not valid JSON"},
		{"createoptions-array", native("    createOptions: [1]\n"), "modules.m.createOptions: must be a JSON object of Docker create options, not an array"},
		{"labels", native("    createOptions: {Labels: {a: 1}}\n"), "modules.m.createOptions.Labels.a: must be a string, not a number"},
		{"binds", native("    createOptions: {HostConfig: {Binds: /a:/b}}\n"), "modules.m.createOptions.HostConfig.Binds: must be an array of strings, not a string"},
		{"ports", native("    createOptions: {HostConfig: {PortBindings: {80/tcp: [{HostPort: 80}]}}}\n"), "modules.m.createOptions.HostConfig.PortBindings.80/tcp[0].HostPort: must be a string, not a number"},
		{"cred-dot", "schemaVersion: '1.0'\nregistryCredentials:\n  a.b: {address: x, username: u, password: p}\n", `registryCredentials.a.b: credential name "a.b": a twin key cannot contain '.'`},
		{"cred-type", "schemaVersion: '1.0'\nregistryCredentials: [1]\n", "registryCredentials: must be an object"},
		{"cred-unknown", "schemaVersion: '1.0'\nregistryCredentials:\n  r: {address: x, username: u, password: p, pasword: q}\n", "(did you mean password?)"},
		{"yaml-tag", "schemaVersion: !custom '1.0'\n", "YAML tag !custom is not supported"},
		{"yaml-inf", native("    desired: {a: .inf}\n"), ".inf cannot be written in JSON"},
		{"yaml-key", "schemaVersion: '1.0'\n? [a]\n: 1\n", "a mapping key must be a plain string"},
		{"edge-no-agent", `{"modulesContent":{"$edgeHub":{}}}`, "modulesContent.$edgeAgent: missing"},
		{"edge-no-desired", `{"modulesContent":{"$edgeAgent":{}}}`, "modulesContent.$edgeAgent.properties.desired: missing"},
		{"edge-env", `{"$edgeAgent":{"properties.desired":{"schemaVersion":"1.1","modules":{"m":{"settings":{"image":"x:1"},"env":{"A":"v"}}}}}}`, "$edgeAgent.properties.desired.modules.m.env.A: must be an object (a mapping), not a string"},
		{"edge-env-value", `{"$edgeAgent":{"properties.desired":{"schemaVersion":"1.1","modules":{"m":{"settings":{"image":"x:1"},"env":{"A":{}}}}}}}`, `modules.m.env.A.value: missing; write {"value": "…"}`},
		{"edge-no-settings", `{"$edgeAgent":{"properties.desired":{"schemaVersion":"1.1","modules":{"m":{}}}}}`, "$edgeAgent.properties.desired.modules.m.settings.image: missing"},
		{"edge-schema", `{"$edgeAgent":{"properties.desired":{"schemaVersion":"1","modules":{}}}}`, `"1" is not supported`},
		{"edge-chunk-repeat", `{"$edgeAgent":{"properties.desired":{"schemaVersion":"1.1","modules":{"m":{"settings":{"image":"x:1","createOptions":"{","createOptions1":"}","createOptions01":"}"}}}}}}`, "repeats chunk createOptions01"},
		{"edge-chunk-first", `{"$edgeAgent":{"properties.desired":{"schemaVersion":"1.1","modules":{"m":{"settings":{"image":"x:1","createOptions01":"{}"}}}}}}`, "createOptions is missing"},
		{"edge-chunk-type", `{"$edgeAgent":{"properties.desired":{"schemaVersion":"1.1","modules":{"m":{"settings":{"image":"x:1","createOptions":"{","createOptions01":5}}}}}}`, "createOptions01: must be a string holding JSON"},
		{"edge-layered-conflict", `{"$edgeAgent":{"properties.desired":{"schemaVersion":"1.1","modules":{}},"properties.desired.schemaVersion":"1.1"}}`, "sets a property that another member of this section sets too"},
		{"too-large", bigNative(40), "a twin holds at most 32768"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse([]byte(tc.doc), "x")
			if err == nil {
				t.Fatalf("Parse succeeded; want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error\n%v\ndoes not contain\n%s", err, tc.want)
			}
		})
	}
}

// bigNative returns a native manifest of n modules with 1 KiB of env each.
func bigNative(n int) string {
	var b strings.Builder
	b.WriteString("schemaVersion: '1.0'\nmodules:\n")
	for i := range n {
		fmt.Fprintf(&b, "  m%d:\n    image: busybox:1\n    env: {A: '%s'}\n", i, strings.Repeat("x", 1024))
	}
	return b.String()
}

func TestYAMLFeatures(t *testing.T) {
	doc := `schemaVersion: "1.0"
x-common: &common
  image: busybox:1
  restartPolicy: never
modules:
  a:
    <<: *common
    restartPolicy: on-unhealthy
    env: {HEX: 0x1F, FLOAT: 1.50, ON: yes, N: ~5}
    desired: {hex: 0x10, big: 1e3, t: 2001-12-14, list: [1, two]}
  b: *common
`
	// x-common is not a native field; put the anchor where it is allowed.
	doc = strings.Replace(doc, "x-common: &common\n  image: busybox:1\n  restartPolicy: never\nmodules:\n", "modules:\n  base: &common\n    image: busybox:1\n    restartPolicy: never\n", 1)
	m, _ := mustParse(t, []byte(doc), "y.yaml")
	a := m.Modules["a"]
	if a.Image != "busybox:1" || a.RestartPolicy != "on-unhealthy" {
		t.Errorf("a = %+v", a)
	}
	if want := map[string]string{"HEX": "0x1F", "FLOAT": "1.50", "ON": "yes", "N": "~5"}; !reflect.DeepEqual(a.Env, want) {
		t.Errorf("env = %v, want %v", a.Env, want)
	}
	if got, want := string(a.Desired), `{"hex":16,"big":1e3,"t":"2001-12-14","list":[1,"two"]}`; got != want {
		t.Errorf("desired = %s, want %s", got, want)
	}
	if b := m.Modules["b"]; b.RestartPolicy != "never" {
		t.Errorf("b = %+v", b)
	}
	checkRoundTrip(t, m)

	bomb := "schemaVersion: '1.0'\nmodules:\n  m:\n    image: x\n    desired:\n      a: &a [1,1,1,1,1,1,1,1,1,1]\n"
	prev := "a"
	for i := range 8 {
		name := fmt.Sprintf("b%d", i)
		bomb += fmt.Sprintf("      %s: &%s [*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s]\n", name, name, prev, prev, prev, prev, prev, prev, prev, prev, prev, prev)
		prev = name
	}
	if _, _, err := Parse([]byte(bomb), "bomb.yaml"); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("alias bomb: %v", err)
	}
}

func TestCreateOptionsCase(t *testing.T) {
	m, warnings := mustParse(t, []byte(`schemaVersion: "1.0"
modules:
  m:
    image: busybox:1
    createOptions: {cmd: [a], Cmd: [b], hostconfig: {binds: [/x:/y], portbindings: {1/tcp: [{hostport: "1", hostip: "::"}]}}}
`), "c.yaml")
	co := m.Modules["m"].CreateOptions
	if !reflect.DeepEqual(co.Cmd, []string{"b"}) || !reflect.DeepEqual(co.HostConfig.Binds, []string{"/x:/y"}) ||
		!reflect.DeepEqual(co.HostConfig.PortBindings["1/tcp"], []PortBinding{{HostIP: "::", HostPort: "1"}}) {
		t.Errorf("create options = %+v", co)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings = %q", warnings)
	}
}

func TestCreateOptionsString(t *testing.T) {
	for _, s := range []string{`""`, `"null"`, `"  "`, `null`} {
		m, _ := mustParse(t, []byte(`{"$edgeAgent":{"properties.desired":{"schemaVersion":"1.1","modules":{"m":{"settings":{"image":"x:1","createOptions":`+s+`}}}}}}`), "s.json")
		if co := m.Modules["m"].CreateOptions; co.Raw != nil {
			t.Errorf("createOptions %s: raw = %s, want none", s, co.Raw)
		}
	}
	// An object instead of a string, as deployment templates write it.
	m, _ := mustParse(t, []byte(`{"$edgeAgent":{"properties.desired":{"schemaVersion":"1.1","modules":{"m":{"settings":{"image":"x:1","createOptions":{"Cmd":"run"}}}}}}}`), "o.json")
	if co := m.Modules["m"].CreateOptions; string(co.Raw) != `{"Cmd":"run"}` || !reflect.DeepEqual(co.Cmd, []string{"run"}) {
		t.Errorf("create options = %+v", co)
	}
	// A string in a native manifest.
	m, _ = mustParse(t, []byte("schemaVersion: '1.0'\nmodules:\n  m:\n    image: x\n    createOptions: '{\"User\": \"1\"}'\n"), "s.yaml")
	if co := m.Modules["m"].CreateOptions; co.User != "1" || string(co.Raw) != `{"User":"1"}` {
		t.Errorf("create options = %+v", co)
	}
}

func TestValidate(t *testing.T) {
	m := &Manifest{
		RegistryCredentials: map[string]RegistryCredential{"r": {Address: "x"}},
		Modules: map[string]Module{
			"a.b": {Image: "busybox"},
			"m": {
				Name: "other", Image: "Bad Image", Status: "paused", RestartPolicy: "sometimes",
				StartupOrder: -1, Env: map[string]string{"1X": "v"},
				CreateOptions: CreateOptions{Raw: json.RawMessage(`[1]`)},
				Desired:       json.RawMessage(`{"a.b":1}`),
			},
		},
	}
	err := m.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate = %v", err)
	}
	for _, want := range []string{
		"registryCredentials.r.username: missing", "registryCredentials.r.password: missing",
		"modules.a.b: module id", "modules.m.name:", "modules.m.image:", "modules.m.status:",
		"modules.m.restartPolicy:", "modules.m.startupOrder:", "modules.m.env.1X:",
		"modules.m.createOptions: must be a JSON object", `modules.m.desired["a.b"]: key must not contain '.'`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error\n%v\ndoes not contain %q", err, want)
		}
	}
	if _, err := m.AgentDesired(); err == nil {
		t.Error("AgentDesired of an invalid manifest succeeded")
	}

	// Typed create options without Raw are written from the typed fields.
	m = &Manifest{Modules: map[string]Module{"m": {Image: "busybox", CreateOptions: CreateOptions{
		Cmd: []string{"sh"}, HostConfig: HostConfig{PortBindings: map[string][]PortBinding{"80/tcp": {{HostPort: "8080"}}}},
	}}}}
	back, _, err := FromAgentDesired(mustAgentDesired(t, m))
	if err != nil {
		t.Fatal(err)
	}
	got := back.Modules["m"]
	if string(got.CreateOptions.Raw) != `{"Cmd":["sh"],"HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"8080"}]}}}` ||
		got.Status != DefaultStatus || got.RestartPolicy != DefaultRestartPolicy || got.Name != "m" {
		t.Errorf("got %+v (raw %s)", got, got.CreateOptions.Raw)
	}
}

func TestErrorFormat(t *testing.T) {
	e := &ValidationError{File: "d.yaml", Problems: []Problem{
		{Path: "modules.m.image", Message: "missing", Line: 3},
		{Message: "invalid JSON", Line: 2, Column: 7},
		{Path: "modules", Message: "no line"},
	}}
	want := "d.yaml:3: modules.m.image: missing\nd.yaml:2:7: invalid JSON\nd.yaml: modules: no line"
	if e.Error() != want {
		t.Errorf("Error() =\n%s\nwant\n%s", e.Error(), want)
	}
	e.File = ""
	if got := e.Error(); !strings.HasPrefix(got, "3: modules.m.image: missing\n") {
		t.Errorf("without a file: %s", got)
	}
}

func TestSuggest(t *testing.T) {
	cases := map[string]string{
		"restartpolicy": "restartPolicy", "imgae": "image", "startuporder": "startupOrder",
		"env": "env", "xyz": "", "desiredProperties": "",
	}
	for in, want := range cases {
		if got := suggest.Closest(in, nativeModuleFields); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestHealthcheck reads Docker's HealthConfig from createOptions, as an
// object and inside an IoT Edge createOptions string, and keeps it through
// the $edgeAgent twin.
func TestHealthcheck(t *testing.T) {
	doc := `schemaVersion: "1.0"
modules:
  m:
    image: busybox:1
    restartPolicy: on-unhealthy
    createOptions:
      healthcheck: {Test: ["CMD-SHELL", "test -f /tmp/ok"], Interval: 2000000000, Timeout: 500000000, StartPeriod: 1000000000, Retries: 2, StartInterval: 1000000}
`
	m, warnings := mustParse(t, []byte(doc), "hc.yaml")
	want := &Healthcheck{Test: []string{"CMD-SHELL", "test -f /tmp/ok"}, Interval: 2 * time.Second,
		Timeout: 500 * time.Millisecond, StartPeriod: time.Second, Retries: 2}
	if got := m.Modules["m"].CreateOptions.Healthcheck; !reflect.DeepEqual(got, want) {
		t.Errorf("Healthcheck = %+v, want %+v", got, want)
	}
	if w := []string{"modules.m.createOptions.healthcheck.StartInterval: not supported yet; ignored (checks run every Interval from the start)"}; !slices.Equal(warnings, w) {
		t.Errorf("warnings = %q, want %q", warnings, w)
	}
	desired := mustAgentDesired(t, m)
	back, _, err := FromAgentDesired(desired)
	if err != nil {
		t.Fatal(err)
	}
	if got := back.Modules["m"].CreateOptions.Healthcheck; !reflect.DeepEqual(got, want) {
		t.Errorf("through the $edgeAgent twin: Healthcheck = %+v, want %+v", got, want)
	}
	// Built in code (no Raw), it is written as Docker names it.
	m.Modules["m"] = Module{Name: "m", Image: "busybox:1", CreateOptions: CreateOptions{Healthcheck: &Healthcheck{Test: []string{"NONE"}}}}
	desired = mustAgentDesired(t, m)
	if !strings.Contains(string(desired), `{\"Healthcheck\":{\"Test\":[\"NONE\"]}}`) {
		t.Errorf("AgentDesired = %s", desired)
	}
}

// TestFromAgentDesiredErrorsHaveNoLines: a twin's compact JSON is one line,
// so its problems are given by path alone.
func TestFromAgentDesiredErrorsHaveNoLines(t *testing.T) {
	_, _, err := FromAgentDesired([]byte(`{"schemaVersion":"1.0","modules":{"m":{"restartPolicy":"sometimes","settings":{"image":"x:1"}}}}`))
	if err == nil || !strings.HasPrefix(err.Error(), "modules.m.restartPolicy: ") {
		t.Errorf("err = %v", err)
	}
}

// TestSystemModulesKeptAsGiven reads a deployment shaped like IoT Edge's own
// e2e ones: $edgeAgent schema 1.0, $edgeHub schema 1.2 with both route forms.
func TestSystemModulesKeptAsGiven(t *testing.T) {
	m, _ := mustParse(t, readFixture(t, "iotedge-e2e-routes.json"), "iotedge-e2e-routes.json")
	var agent struct {
		SchemaVersion string
		SystemModules map[string]struct{ Settings map[string]string }
	}
	if err := json.Unmarshal(mustAgentDesired(t, m), &agent); err != nil {
		t.Fatal(err)
	}
	if agent.SchemaVersion != "1.0" || agent.SystemModules["edgeHub"].Settings["image"] != "mcr.microsoft.com/azureiotedge-hub:1.4" {
		t.Errorf("$edgeAgent desired: schemaVersion %q, systemModules %+v; want them as given", agent.SchemaVersion, agent.SystemModules)
	}
	var hub struct {
		SchemaVersion string
		Routes        map[string]json.RawMessage
	}
	if err := json.Unmarshal(m.HubDesired(), &hub); err != nil {
		t.Fatal(err)
	}
	if hub.SchemaVersion != "1.2" || string(hub.Routes["TempSensorToTempFilter"]) != `{"route":"FROM /messages/modules/tempSensor/outputs/temperatureOutput INTO BrokeredEndpoint(\"/modules/filterFunction/inputs/input1\")","priority":0,"timeToLiveSecs":86400}` ||
		!strings.HasPrefix(string(hub.Routes["TempFilterFunctionsToCloud"]), `"FROM /messages/modules/filterFunction`) {
		t.Errorf("$edgeHub desired = %s", m.HubDesired())
	}
	checkRoundTrip(t, m)
}

func TestEdgeHubErrors(t *testing.T) {
	agent := `"$edgeAgent":{"properties.desired":{"schemaVersion":"1.1","modules":{}}}`
	for _, tc := range []struct{ name, hub, want string }{
		{"priority", `{"schemaVersion":"1.1","routes":{"r":{"route":"FROM /messages/* INTO $upstream","priority":10}}}`, "routes.r.priority: 10 is out of range"},
		{"no-route", `{"schemaVersion":"1.1","routes":{"r":{"priority":1}}}`, "routes.r.route: missing"},
		{"number", `{"schemaVersion":"1.1","routes":{"r":5}}`, "routes.r: is a number; a route is a string"},
		{"ttl", `{"schemaVersion":"1.1","storeAndForwardConfiguration":{"timeToLiveSecs":-1}}`, "storeAndForwardConfiguration.timeToLiveSecs: -1 is not a whole number"},
		{"schema", `{"schemaVersion":"2.0","routes":{}}`, `schemaVersion: "2.0" is not supported`},
		{"no-schema", `{"routes":{}}`, "schemaVersion: missing"},
	} {
		_, _, err := Parse([]byte(`{"modulesContent":{`+agent+`,"$edgeHub":{"properties.desired":`+tc.hub+`}}}`), "d.json")
		if err == nil || !strings.Contains(err.Error(), "modulesContent.$edgeHub.properties.desired."+tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestModulesContent checks that a manifest rendered as modulesContent reads
// back, as an IoT Edge deployment, to the same manifest.
func TestModulesContent(t *testing.T) {
	m, _ := mustParse(t, readFixture(t, "native.yaml"), "native.yaml")
	mc, err := m.ModulesContent()
	if err != nil {
		t.Fatal(err)
	}
	back, _ := mustParse(t, append(append([]byte(`{"modulesContent":`), mc...), '}'), "mc.json")
	if !reflect.DeepEqual(mustAgentDesired(t, back), mustAgentDesired(t, m)) || string(back.HubDesired()) != string(m.HubDesired()) {
		t.Fatalf("modulesContent does not read back to the manifest:\n%s", mc)
	}
	for id, mod := range m.Modules {
		if string(back.Modules[id].Desired) != string(mod.Desired) {
			t.Errorf("module %s desired %s, want %s", id, back.Modules[id].Desired, mod.Desired)
		}
	}
}
