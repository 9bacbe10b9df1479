package deployment

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// addFixtureSeeds adds every manifest fixture, good and broken, as a seed.
func addFixtureSeeds(f *testing.F) {
	for _, pattern := range []string{"*.json", "*.yaml", "broken/*.json", "broken/*.yaml"} {
		files, err := filepath.Glob(filepath.Join(fixtures, pattern))
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
}

// FuzzParse checks that Parse never panics and that whatever it accepts
// renders as $edgeAgent desired properties within the twin limits, which read
// back to the same manifest.
func FuzzParse(f *testing.F) {
	addFixtureSeeds(f)
	for _, s := range []string{
		"schemaVersion: '1.0'\nmodules:\n  m:\n    image: busybox\n    env: {A: 1}\n    createOptions: {Cmd: x}\n",
		`{"$edgeAgent":{"properties.desired":{"schemaVersion":"1.1","modules":{"m":{"settings":{"image":"x:1","createOptions":"{\"Env\":[\"é\"]}"}}}}}}`,
		`{"content":{"modulesContent":{"$edgeAgent":{"properties.desired.schemaVersion":"1.0"}}}}`,
		"a: &a {b: *a}\n",
		"schemaVersion: '1.0'\nmodules:\n  m: &m {image: x}\n  n: {<<: *m, version: 1.0}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, _, err := Parse(data, "fuzz")
		if err != nil {
			if _, ok := err.(*ValidationError); !ok {
				t.Fatalf("error %T, want *ValidationError: %v", err, err)
			}
			return
		}
		checkRoundTrip(t, m)
	})
}

// FuzzFromAgentDesired checks that FromAgentDesired never panics and that
// what it accepts renders back to the same manifest when it fits a twin.
func FuzzFromAgentDesired(f *testing.F) {
	for _, s := range []string{
		`{"schemaVersion":"1.1","runtime":{"type":"docker","settings":{}},"modules":{}}`,
		`{"schemaVersion":"1.1","modules":{"m":{"type":"docker","status":"running","restartPolicy":"always","startupOrder":1,"settings":{"image":"x:1","createOptions":"{\"Cmd\":","createOptions01":"[\"a\"]}"},"env":{"A":{"value":"1"}}}},"$version":3,"$metadata":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, _, err := FromAgentDesired(data)
		if err != nil {
			return
		}
		b, err := m.AgentDesired()
		if err != nil {
			return // too large for a twin, for one
		}
		back, _, err := FromAgentDesired(b)
		if err != nil {
			t.Fatalf("FromAgentDesired(AgentDesired()): %v\n%s", err, b)
		}
		if got, want := withoutTwinOnly(back), withoutTwinOnly(m); !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, want)
		}
	})
}
