package devloop

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/outpost-edge/outpost/internal/deployment"
	"github.com/outpost-edge/outpost/internal/image"
)

// DeploymentFile is the solution's deployment manifest, beside modules/.
const DeploymentFile = "deployment.yaml"

// solution is a solution directory as `outpost init` lays it out:
// modules/NAME/module.yaml for each module, and deployment.yaml.
type solution struct {
	dir     string // absolute
	modules []*module
}

// module is one module.yaml of the solution.
type module struct {
	name string        // module.yaml's name
	dir  string        // absolute
	spec *image.Module // as loaded (Repository as written)
}

// loadSolution finds the modules of the solution in dir.
func loadSolution(dir string) (*solution, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("solution %s: %w", dir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("solution %s is not a directory: give the directory `outpost init` made", dir)
	}
	if _, err := os.Stat(filepath.Join(abs, DeploymentFile)); err != nil {
		return nil, fmt.Errorf("solution %s has no %s: `outpost init %s` makes a solution (a module and its deployment)", dir, DeploymentFile, dir)
	}
	files, err := filepath.Glob(filepath.Join(abs, "modules", "*", image.ModuleFile))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("solution %s has no modules/*/%s: `outpost init %s --name NAME` adds a module", dir, image.ModuleFile, dir)
	}
	s := &solution{dir: abs}
	seen := map[string]string{}
	for _, f := range files {
		md := filepath.Dir(f)
		spec, err := image.LoadModule(md)
		if err != nil {
			return nil, err
		}
		if other, ok := seen[spec.Name]; ok {
			return nil, fmt.Errorf("%s and %s both name their module %q: give each module its own name", other, f, spec.Name)
		}
		seen[spec.Name] = f
		s.modules = append(s.modules, &module{name: spec.Name, dir: md, spec: spec})
	}
	slices.SortFunc(s.modules, func(a, b *module) int { return strings.Compare(a.name, b.name) })
	return s, nil
}

// moduleOf returns the module whose inputs hold path, or nil.
func (s *solution) moduleOf(path string) *module {
	for _, m := range s.modules {
		if path == m.dir || strings.HasPrefix(path, m.dir+string(filepath.Separator)) {
			return m
		}
	}
	return nil
}

// manifest reads deployment.yaml and returns it as JSON with each module
// built here (matched by image repository, else by module id = module
// name) set to images[module name], and the deployment's module ids of
// each built module.
func (s *solution) manifest(images map[string]string) (doc []byte, ids map[string][]string, err error) {
	path := filepath.Join(s.dir, DeploymentFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	m, _, err := deployment.Parse(data, path)
	if err != nil {
		var ve *deployment.ValidationError
		if errors.As(err, &ve) {
			return nil, nil, fmt.Errorf("%s is not valid:\n%w", DeploymentFile, err)
		}
		return nil, nil, err
	}
	doc, err = deployment.ToJSON(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	ids = map[string][]string{}
	set := map[string]string{}
	for id, dm := range m.Modules {
		bm := s.builtFor(id, dm.Image)
		if bm == nil {
			continue
		}
		ids[bm.name] = append(ids[bm.name], id)
		if ref, ok := images[bm.name]; ok {
			set[id] = ref
		}
	}
	if len(set) > 0 {
		if doc, err = deployment.SetImages(doc, set); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return doc, ids, nil
}

// builtFor returns the module built here that a deployment's module id with
// image ref runs: the one whose repository is ref's, else the one named id.
func (s *solution) builtFor(id, ref string) *module {
	if r, err := name.ParseReference(ref, name.WeakValidation); err == nil {
		for _, m := range s.modules {
			if repo, err := name.NewRepository(m.spec.Repository, name.WeakValidation); err == nil && repo.Name() == r.Context().Name() {
				return m
			}
		}
	}
	for _, m := range s.modules {
		if m.name == id {
			return m
		}
	}
	return nil
}

// ignored reports whether a change at path (relative to the solution) is
// none of the loop's business: version control, outpost's own state, and
// the temporary and backup files of editors.
func ignored(rel string) bool {
	for _, part := range strings.Split(filepath.ToSlash(rel), "/") {
		switch part {
		case ".git", ".hg", ".svn", ".outpost", ".idea", ".vscode", "node_modules":
			return true
		}
	}
	base := filepath.Base(rel)
	switch {
	case base == "4913", // vim's probe that the directory is writable
		strings.HasSuffix(base, "~"),
		strings.HasPrefix(base, ".#"),
		strings.HasPrefix(base, "#") && strings.HasSuffix(base, "#"),
		strings.HasSuffix(base, ".swp"), strings.HasSuffix(base, ".swx"), strings.HasSuffix(base, ".swo"),
		strings.HasSuffix(base, ".tmp"), strings.HasSuffix(base, ".bak"),
		strings.Contains(base, ".tmp."), // atomic savers: main.go.tmp.1234
		strings.HasPrefix(base, ".goutputstream-"),
		base == ".DS_Store":
		return true
	}
	return false
}

// walkDirs calls fn for root and every directory under it that is not
// ignored.
func walkDirs(root string, fn func(dir string) error) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root {
				return err
			}
			return nil // gone meanwhile
		}
		if !d.IsDir() {
			return nil
		}
		if rel, _ := filepath.Rel(root, p); rel != "." && ignored(rel) {
			return filepath.SkipDir
		}
		return fn(p)
	})
}
