package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"go.yaml.in/yaml/v3"

	"github.com/outpost-edge/outpost/internal/atomicfile"
)

// initDefaultRegistry is where init's images are by default: outpost
// registry serve's default address.
const initDefaultRegistry = "localhost:5000"

// initRender fills a scaffold template for module name and registry.
func initRender(content, name, registry string) string {
	content = strings.ReplaceAll(content, initDefaultRegistry+"/{{NAME}}", registry+"/{{NAME}}")
	return strings.ReplaceAll(content, "{{NAME}}", name)
}

// checkRegistryFlag checks --registry: a host with an optional port, as
// image references start.
func checkRegistryFlag(reg string) error {
	bad := func(why string) error {
		return flagErrorf("--registry %q: %s; give HOST[:PORT], such as localhost:5000 or registry.example.com", reg, why)
	}
	switch {
	case strings.Contains(reg, "://"):
		return bad("no scheme (outpost speaks plain HTTP to loopback registries only, HTTPS to the rest)")
	case strings.Contains(reg, "/"):
		return bad("no path: init adds /NAME")
	}
	if _, err := name.NewRegistry(reg, name.StrictValidation); err != nil {
		return bad(err.Error())
	}
	return nil
}

// initAdd is a solution's deployment.yaml that init adds a module to.
type initAdd struct {
	path     string
	doc      yaml.Node
	modules  *yaml.Node // the modules mapping (nil: the key is missing or null)
	registry string     // the registry of the first module's image there ("" if none)
	mode     fs.FileMode
	// conflict: the deployment has a module of that name already (told
	// after the files in the way, which say more).
	conflict error
}

// initAddition reads DIR/deployment.yaml when there is one (nil when not),
// and checks that the module can be added to it: before init writes
// anything.
func initAddition(opts *initOptions) (*initAdd, error) {
	p := filepath.Join(opts.Dir, "deployment.yaml")
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	a := &initAdd{path: p, mode: fi.Mode().Perm()}
	fail := func(format string, args ...any) error {
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("init: add %s to %s: "+format, append([]any{opts.Name, p}, args...)...),
			Hint: "Add the module to the deployment by hand, or init a new solution in another directory."}
	}
	if err := yaml.Unmarshal(data, &a.doc); err != nil {
		return nil, fail("%v", err)
	}
	if a.doc.Kind != yaml.DocumentNode || len(a.doc.Content) != 1 || a.doc.Content[0].Kind != yaml.MappingNode {
		return nil, fail("it is not a YAML mapping (a native deployment manifest)")
	}
	root := a.doc.Content[0]
	if mappingValue(root, "modulesContent") != nil {
		return nil, fail("it is an Azure IoT Edge manifest (modulesContent): init edits native manifests only")
	}
	switch mods := mappingValue(root, "modules"); {
	case mods == nil || mods.Tag == "!!null":
	case mods.Kind != yaml.MappingNode:
		return nil, fail("line %d: modules is not a mapping of module names", mods.Line)
	default:
		a.modules = mods
		if m := mappingValue(mods, opts.Name); m != nil {
			a.conflict = fail("line %d: it has a module %s already; pick another --name", m.Line, opts.Name)
		}
		for i := 1; i < len(mods.Content); i += 2 {
			if img := mappingValue(mods.Content[i], "image"); img != nil && img.Kind == yaml.ScalarNode {
				if ref, err := name.ParseReference(img.Value); err == nil {
					a.registry = ref.Context().RegistryStr()
					break
				}
			}
		}
	}
	return a, nil
}

// mappingValue is the value of key in mapping m (nil when absent).
func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// write adds module name (init's deployment entry, for registry) to the
// deployment and writes it back atomically: the user's comments and the
// order of keys stay.
func (a *initAdd) write(name, registry string) error {
	// init's own entry for a module: the modules part of its deployment.yaml.
	_, entry, _ := strings.Cut(initRender(initDeploymentYAML, name, registry), "modules:\n")
	var lines []string
	for _, l := range strings.Split(entry, "\n") {
		lines = append(lines, strings.TrimPrefix(l, "  "))
	}
	var snippet yaml.Node
	if err := yaml.Unmarshal([]byte(strings.Join(lines, "\n")), &snippet); err != nil {
		return fmt.Errorf("the module's entry: %w", err)
	}
	pair := snippet.Content[0].Content // key, value
	root := a.doc.Content[0]
	if a.modules == nil {
		if v := mappingValue(root, "modules"); v != nil { // modules: (null)
			*v = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", LineComment: v.LineComment, HeadComment: v.HeadComment, FootComment: v.FootComment}
			a.modules = v
		} else {
			a.modules = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "modules"}, a.modules)
		}
	}
	a.modules.Content = append(a.modules.Content, pair...)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&a.doc); err != nil {
		return fmt.Errorf("%s: %w", a.path, err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("%s: %w", a.path, err)
	}
	return atomicfile.WriteFile(a.path, buf.Bytes(), a.mode)
}
