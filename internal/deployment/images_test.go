package deployment

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSetImages rewrites module images in every manifest shape Parse
// accepts; parsing the result gives the new images and nothing else changed.
func TestSetImages(t *testing.T) {
	const pinned = "myreg.example:5000/tempsensor:1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	files, _ := filepath.Glob(filepath.Join(fixtures, "*"))
	cfgs, _ := filepath.Glob(filepath.Join("..", "..", "fixtures", "configurations", "base-*.json"))
	tested := 0
	for _, file := range append(files, cfgs...) {
		if fi, err := os.Stat(file); err != nil || fi.IsDir() {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		before, _, err := Parse(data, file)
		if err != nil || len(before.Modules) == 0 {
			continue
		}
		var id string
		for id = range before.Modules {
			break
		}
		doc, err := ToJSON(data)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		out, err := SetImages(doc, map[string]string{id: pinned})
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		after, _, err := Parse(out, file)
		if err != nil {
			t.Fatalf("%s: the result does not parse: %v\n%s", file, err, out)
		}
		for mid, m := range before.Modules {
			want := m.Image
			if mid == id {
				want = pinned
			}
			if got := after.Modules[mid].Image; got != want {
				t.Errorf("%s: module %s image %q, want %q", file, mid, got, want)
			}
		}
		if len(after.Modules) != len(before.Modules) || after.Modules[id].Version != before.Modules[id].Version {
			t.Errorf("%s: modules changed beyond the image", file)
		}
		tested++
	}
	if tested < 3 {
		t.Fatalf("only %d manifests tested", tested)
	}
	if _, err := SetImages([]byte(`{"schemaVersion":"1.0","modules":{}}`), map[string]string{"nope": pinned}); err == nil || !strings.Contains(err.Error(), "no module nope") {
		t.Errorf("a module the manifest lacks: %v", err)
	}
}
