package sdk

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGoModMatchesRepository: the SDK's go.mod requires what the
// repository's go.mod requires of the same modules, so that a module
// built against the copy uses the versions outpost was tested with.
func TestGoModMatchesRepository(t *testing.T) {
	repo, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	versions := map[string]string{}
	for _, line := range strings.Split(string(repo), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			versions[f[0]] = f[1]
		}
	}
	n := 0
	for _, line := range strings.Split(GoMod, "\n") {
		f := strings.Fields(strings.TrimPrefix(line, "require "))
		if len(f) < 2 || !strings.Contains(f[0], ".") || f[0] == "module" {
			continue
		}
		n++
		if versions[f[0]] != f[1] {
			t.Errorf("the SDK requires %s %s, the repository %q: keep sdk.GoMod (and the init scaffold's go.mod and go.sum) the same", f[0], f[1], versions[f[0]])
		}
	}
	if n != 4 {
		t.Errorf("%d requirements in GoMod, want 4", n)
	}
}

// TestWriteModule: the SDK's sources without its tests, and its go.mod.
func TestWriteModule(t *testing.T) {
	dir := t.TempDir()
	if err := WriteModule(dir); err != nil {
		t.Fatal(err)
	}
	got, err := filepath.Glob(filepath.Join(dir, "sdk", "moduleclient", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.Glob("moduleclient/*.go")
	nonTest := 0
	for _, w := range want {
		if !strings.HasSuffix(w, "_test.go") {
			nonTest++
		}
	}
	if len(got) != nonTest || nonTest == 0 {
		t.Errorf("wrote %v, want the %d non-test files of %v", got, nonTest, want)
	}
	for _, g := range got {
		if strings.HasSuffix(g, "_test.go") {
			t.Errorf("wrote a test: %s", g)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "go.mod")); string(b) != GoMod {
		t.Errorf("go.mod: %q", b)
	}
	// Written again over an older copy: replaced.
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteModule(dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "go.mod")); string(b) != GoMod {
		t.Errorf("go.mod after a second write: %q", b)
	}
}
