package image

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/outpost-edge/outpost/internal/suggest"
	"go.yaml.in/yaml/v3"
)

// ModuleFile is the name of a module's build description.
const ModuleFile = "module.yaml"

// Build kinds: how a module's files are made.
const (
	KindGo         = "go"
	KindDockerfile = "dockerfile"
	KindFiles      = "files"
)

// DefaultPlatform is what a module builds for when module.yaml names no
// platforms and no --platform is given.
const DefaultPlatform = "linux/amd64"

// Module is a parsed module.yaml (DESIGN "Images").
type Module struct {
	Dir  string // the module's directory, as given
	File string // the module.yaml path, as given (for messages)

	Name       string
	Repository string // without tag
	Tag        string // "latest" when module.yaml has none
	Platforms  []string
	Base       string // "scratch" or an image reference; for dockerfile builds, empty (FROM names it)
	Build      BuildSpec

	// Image config set by module.yaml; nil or empty means "not set" (the
	// base's or the Dockerfile's value stays).
	Entrypoint   []string
	Cmd          []string
	Env          []EnvVar
	WorkingDir   string
	User         string
	Labels       []EnvVar // name=value, in file order
	ExposedPorts []string // "8080/tcp"

	absDir string // Dir, absolute and with symlinks resolved
}

// BuildSpec says how the module's files are made: exactly one kind.
type BuildSpec struct {
	Kind       string     // KindGo, KindDockerfile or KindFiles
	Go         string     // package to build, relative to the module dir ("./cmd/x", ".")
	Dockerfile string     // relative to the module dir
	Files      []FileCopy // in file order
	Line       int        // line of build's value in module.yaml
}

// FileCopy is one entry of build.files: src (file or directory, inside the
// module dir) copied to dst in the image.
type FileCopy struct {
	Src, Dst string
	Line     int
}

// EnvVar is one NAME=value pair.
type EnvVar struct{ Name, Value string }

// Reference returns the module's image reference with tag (or the module's
// tag when tag is empty).
func (m *Module) Reference(tag string) (name.Tag, error) {
	if tag == "" {
		tag = m.Tag
	}
	if err := CheckTag(tag); err != nil {
		return name.Tag{}, err
	}
	return name.NewTag(m.Repository+":"+tag, name.WeakValidation)
}

// CheckTag checks an image tag: up to 128 letters, digits, '_', '.' or '-',
// not starting with '.' or '-'.
func CheckTag(tag string) error {
	if !tagRE.MatchString(tag) {
		return fmt.Errorf("%q is not a tag: up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'", tag)
	}
	return nil
}

// ModuleError lists what is wrong with a module.yaml (or a Dockerfile), one
// problem a line: "file:line: field: message".
type ModuleError struct {
	File     string
	Problems []Problem
}

// Problem is one thing wrong with a file.
type Problem struct {
	Line    int    // 1-based, 0 when unknown
	Field   string // dotted path such as "build.go"; empty for syntax errors
	Message string
}

func (e *ModuleError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		var b strings.Builder
		b.WriteString(e.File)
		if p.Line > 0 {
			b.WriteString(":" + strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
		if p.Field != "" {
			b.WriteString(p.Field + ": ")
		}
		b.WriteString(p.Message)
		lines[i] = b.String()
	}
	return strings.Join(lines, "\n")
}

var (
	moduleFields = []string{"name", "repository", "tag", "platforms", "base", "build", "entrypoint", "cmd", "env", "workingDir", "user", "labels", "exposedPorts"}
	buildFields  = []string{KindGo, KindDockerfile, KindFiles}
	fileFields   = []string{"src", "dst"}

	moduleNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	envNameRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	tagRE        = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	portRE       = regexp.MustCompile(`^([0-9]{1,5})(/(tcp|udp|sctp))?$`)
)

// LoadModule reads dir/module.yaml. A missing file is an error that wraps
// os.ErrNotExist.
func LoadModule(dir string) (*Module, error) {
	file := filepath.Join(dir, ModuleFile)
	data, err := os.ReadFile(file)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: no such file (a module directory holds a module.yaml; `outpost init` makes one): %w", file, os.ErrNotExist)
		}
		return nil, err
	}
	return ParseModule(data, dir, file)
}

// ParseModule parses module.yaml's data for the module in dir; file names it
// in errors. Every problem found is reported, each with its line and field.
func ParseModule(data []byte, dir, file string) (*Module, error) {
	abs, err := filepath.Abs(dir)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return nil, fmt.Errorf("module directory %s: %w", dir, err)
	}
	p := &moduleParser{file: file}
	m := &Module{Dir: dir, File: file, absDir: abs, Tag: "latest", Base: "scratch"}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		p.problems = append(p.problems, yamlProblem(err))
		return nil, p.err()
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		p.errorf(0, "", "the file is empty; it needs at least name, repository and build")
		return nil, p.err()
	}
	root := doc.Content[0]
	fields := p.mapping(root, "", moduleFields)
	if fields == nil {
		return nil, p.err()
	}

	if n, ok := fields["name"]; ok {
		m.Name = p.str(n, "name")
		if m.Name != "" && !moduleNameRE.MatchString(m.Name) {
			p.errorf(n.Line, "name", "%q is not a module name: 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", m.Name)
		}
	} else {
		p.errorf(root.Line, "name", "missing; name the module (it names the binary and the image)")
	}

	if n, ok := fields["repository"]; ok {
		m.Repository = p.str(n, "repository")
		if m.Repository != "" {
			if err := checkRepository(m.Repository); err != nil {
				p.errorf(n.Line, "repository", "%v", err)
			}
		}
	} else {
		suggestion := "localhost:5000/" + strings.ToLower(m.Name)
		if m.Name == "" {
			suggestion = "localhost:5000/NAME"
		}
		p.errorf(root.Line, "repository", "missing; say where the image goes, such as repository: %s", suggestion)
	}

	if n, ok := fields["tag"]; ok {
		m.Tag = p.scalar(n, "tag")
		if m.Tag != "" {
			if !tagRE.MatchString(m.Tag) {
				p.errorf(n.Line, "tag", "%q is not a tag: up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'", m.Tag)
			}
		} else {
			m.Tag = "latest"
		}
	}

	if n, ok := fields["platforms"]; ok {
		m.Platforms = p.platforms(n)
	}
	if len(m.Platforms) == 0 {
		m.Platforms = []string{DefaultPlatform}
	}

	if n, ok := fields["base"]; ok {
		m.Base = p.str(n, "base")
		if m.Base != "" && m.Base != "scratch" {
			if _, err := name.ParseReference(m.Base, name.WeakValidation); err != nil {
				p.errorf(n.Line, "base", "%q is not an image reference (%v); use scratch or a reference such as gcr.io/distroless/static:nonroot", m.Base, err)
			}
		}
		if m.Base == "" {
			m.Base = "scratch"
		}
	}

	if n, ok := fields["build"]; ok {
		m.Build = p.build(n, abs)
	} else {
		p.errorf(root.Line, "build", "missing; say how the module is built: build: {go: .}, {dockerfile: Dockerfile} or {files: [{src: dist/, dst: /app/}]}")
	}
	if m.Build.Kind == KindDockerfile {
		if n, ok := fields["base"]; ok {
			p.errorf(n.Line, "base", "a dockerfile build takes its base from the Dockerfile's FROM; remove base from module.yaml")
		}
		m.Base = ""
	}

	if n, ok := fields["entrypoint"]; ok {
		m.Entrypoint = p.strings(n, "entrypoint", `["/`+m.Name+`"]`)
	}
	if n, ok := fields["cmd"]; ok {
		m.Cmd = p.strings(n, "cmd", `["--interval", "5"]`)
	}
	if n, ok := fields["env"]; ok {
		m.Env = p.pairs(n, "env", true)
	}
	if n, ok := fields["labels"]; ok {
		m.Labels = p.pairs(n, "labels", false)
	}
	if n, ok := fields["workingDir"]; ok {
		m.WorkingDir = p.str(n, "workingDir")
		if m.WorkingDir != "" && !path.IsAbs(m.WorkingDir) {
			p.errorf(n.Line, "workingDir", "%q must be an absolute path in the image, such as /app", m.WorkingDir)
		}
	}
	if n, ok := fields["user"]; ok {
		m.User = p.scalar(n, "user")
	}
	if n, ok := fields["exposedPorts"]; ok {
		for i, s := range p.strings(n, "exposedPorts", `["8080/tcp"]`) {
			mm := portRE.FindStringSubmatch(s)
			if mm == nil {
				p.errorf(n.Content[i].Line, fmt.Sprintf("exposedPorts[%d]", i), "%q is not a port: a number, optionally with /tcp, /udp or /sctp", s)
				continue
			}
			if port, _ := strconv.Atoi(mm[1]); port < 1 || port > 65535 {
				p.errorf(n.Content[i].Line, fmt.Sprintf("exposedPorts[%d]", i), "port %s is out of range 1-65535", mm[1])
				continue
			}
			if mm[2] == "" {
				s += "/tcp"
			}
			m.ExposedPorts = append(m.ExposedPorts, s)
		}
	}

	if err := p.err(); err != nil {
		return nil, err
	}
	return m, nil
}

// checkRepository checks a repository reference without tag or digest.
func checkRepository(s string) error {
	if strings.Contains(s, "@") {
		return fmt.Errorf("%q has a digest; a repository is a name only, such as localhost:5000/tempsensor", s)
	}
	if i := strings.LastIndex(s, ":"); i > strings.LastIndex(s, "/") {
		return fmt.Errorf("%q has a tag; put the tag in tag: and leave repository a name only", s)
	}
	if _, err := name.NewRepository(s, name.WeakValidation); err != nil {
		return fmt.Errorf("%q is not a repository: %v", s, err)
	}
	return nil
}

// moduleParser collects the problems of one module.yaml.
type moduleParser struct {
	file     string
	problems []Problem
}

func (p *moduleParser) errorf(line int, field, format string, a ...any) {
	p.problems = append(p.problems, Problem{Line: line, Field: field, Message: fmt.Sprintf(format, a...)})
}

func (p *moduleParser) err() error {
	if len(p.problems) == 0 {
		return nil
	}
	return &ModuleError{File: p.file, Problems: p.problems}
}

var yamlLineRE = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// yamlProblem turns a YAML syntax error into a problem with its line.
func yamlProblem(err error) Problem {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Problem{Line: line, Message: "not valid YAML: " + m[2]}
	}
	return Problem{Message: "not valid YAML: " + msg}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return "a scalar"
	case yaml.AliasNode:
		return "an alias"
	}
	return "empty"
}

// mapping checks that n is a mapping of known keys and returns the values by
// key. Unknown and repeated keys are problems.
func (p *moduleParser) mapping(n *yaml.Node, field string, known []string) map[string]*yaml.Node {
	if n.Kind != yaml.MappingNode {
		where := field
		if where == "" {
			p.errorf(n.Line, "", "must be a mapping of fields (name, repository, build, …), not %s", kindName(n))
		} else {
			p.errorf(n.Line, where, "must be a mapping, not %s", kindName(n))
		}
		return nil
	}
	out := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := k.Value
		f := joinField(field, key)
		if _, dup := out[key]; dup {
			p.errorf(k.Line, f, "given twice")
			continue
		}
		if !contains(known, key) {
			msg := "unknown field"
			if s := suggest.Closest(key, known); s != "" {
				msg += " (did you mean " + s + "?)"
			} else {
				msg += "; known fields here: " + strings.Join(known, ", ")
			}
			p.errorf(k.Line, f, "%s", msg)
			continue
		}
		out[key] = v
	}
	return out
}

func joinField(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// str reads a string scalar.
func (p *moduleParser) str(n *yaml.Node, field string) string {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.errorf(n.Line, field, "must be a string, not %s", kindName(n))
		return ""
	}
	if n.Tag != "!!str" {
		p.errorf(n.Line, field, "must be a string, not %s (%s); quote it", strings.TrimPrefix(n.Tag, "!!"), n.Value)
		return ""
	}
	return n.Value
}

// scalar reads a string, number or boolean as the text written.
func (p *moduleParser) scalar(n *yaml.Node, field string) string {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.errorf(n.Line, field, "must be a string, not %s", kindName(n))
		return ""
	}
	return n.Value
}

// strings reads a list of strings (numbers taken as written).
func (p *moduleParser) strings(n *yaml.Node, field, example string) []string {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n.Line, field, "must be a list of strings, such as %s, not %s", example, kindName(n))
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for i, c := range n.Content {
		out = append(out, p.scalar(c, fmt.Sprintf("%s[%d]", field, i)))
	}
	return out
}

// pairs reads a mapping of NAME: value in file order.
func (p *moduleParser) pairs(n *yaml.Node, field string, envNames bool) []EnvVar {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, field, "must be a mapping of names to values, such as {INTERVAL: \"5\"}, not %s", kindName(n))
		return nil
	}
	var out []EnvVar
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		f := joinField(field, k.Value)
		if seen[k.Value] {
			p.errorf(k.Line, f, "given twice")
			continue
		}
		seen[k.Value] = true
		if envNames && !envNameRE.MatchString(k.Value) {
			p.errorf(k.Line, f, "%q is not an environment variable name: letters, digits and '_', not starting with a digit", k.Value)
			continue
		}
		if k.Value == "" {
			p.errorf(k.Line, f, "empty name")
			continue
		}
		out = append(out, EnvVar{Name: k.Value, Value: p.scalar(v, f)})
	}
	return out
}

// platforms reads platforms: a list (or a comma-separated string) of
// os/arch[/variant].
func (p *moduleParser) platforms(n *yaml.Node) []string {
	type item struct {
		s    string
		line int
		f    string
	}
	var items []item
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!str":
		for _, s := range strings.Split(n.Value, ",") {
			items = append(items, item{s, n.Line, "platforms"})
		}
	case n.Kind == yaml.SequenceNode:
		for i, c := range n.Content {
			f := fmt.Sprintf("platforms[%d]", i)
			items = append(items, item{p.str(c, f), c.Line, f})
		}
	default:
		p.errorf(n.Line, "platforms", "must be a list such as [linux/amd64, linux/arm64, linux/arm/v7], not %s", kindName(n))
		return nil
	}
	var out []string
	for _, it := range items {
		if it.s == "" && it.f != "platforms" {
			continue // already reported
		}
		pl, err := ParsePlatform(it.s)
		if err != nil {
			p.errorf(it.line, it.f, "%v", err)
			continue
		}
		if contains(out, pl.String()) {
			p.errorf(it.line, it.f, "%s is listed twice", pl)
			continue
		}
		out = append(out, pl.String())
	}
	return out
}

// build reads build: exactly one of go, dockerfile or files.
func (p *moduleParser) build(n *yaml.Node, dir string) BuildSpec {
	spec := BuildSpec{Line: n.Line}
	fields := p.mapping(n, "build", buildFields)
	if fields == nil {
		return spec
	}
	var kinds []string
	for _, k := range buildFields {
		if _, ok := fields[k]; ok {
			kinds = append(kinds, k)
		}
	}
	switch len(kinds) {
	case 0:
		p.errorf(n.Line, "build", "names no build kind; give one of go (a Go package to cross-compile), dockerfile or files")
		return spec
	case 1:
	default:
		p.errorf(n.Line, "build", "gives %s; give exactly one build kind", strings.Join(kinds, " and "))
		return spec
	}
	spec.Kind = kinds[0]
	v := fields[spec.Kind]
	field := "build." + spec.Kind
	switch spec.Kind {
	case KindGo:
		s := p.str(v, field)
		if s == "" {
			if v.Tag == "!!str" {
				p.errorf(v.Line, field, "empty; name the main package, such as . or ./cmd/%s", "NAME")
			}
			return spec
		}
		rel, err := insideDir(dir, s)
		if err != nil {
			p.errorf(v.Line, field, "%v", err)
			return spec
		}
		if fi, err := os.Stat(filepath.Join(dir, rel)); err != nil || !fi.IsDir() {
			p.errorf(v.Line, field, "%s is not a directory in the module directory; name the main package's directory, such as . or ./cmd/NAME", s)
			return spec
		}
		spec.Go = "./" + filepath.ToSlash(rel)
		if rel == "." {
			spec.Go = "."
		}
	case KindDockerfile:
		s := p.str(v, field)
		if s == "" {
			return spec
		}
		rel, err := insideDir(dir, s)
		if err != nil {
			p.errorf(v.Line, field, "%v", err)
			return spec
		}
		if fi, err := os.Stat(filepath.Join(dir, rel)); err != nil || fi.IsDir() {
			p.errorf(v.Line, field, "%s is not a file in the module directory", s)
			return spec
		}
		spec.Dockerfile = rel
	case KindFiles:
		if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
			p.errorf(v.Line, field, "must be a list of {src, dst}, such as [{src: dist/, dst: /app/}]")
			return spec
		}
		for i, c := range v.Content {
			f := fmt.Sprintf("%s[%d]", field, i)
			ff := p.mapping(c, f, fileFields)
			if ff == nil {
				continue
			}
			fc := FileCopy{Line: c.Line}
			for _, k := range fileFields {
				if _, ok := ff[k]; !ok {
					p.errorf(c.Line, f+"."+k, "missing")
				}
			}
			if sv, ok := ff["src"]; ok {
				if s := p.str(sv, f+".src"); s != "" {
					if _, err := insideDir(dir, s); err != nil {
						p.errorf(sv.Line, f+".src", "%v", err)
					} else if _, err := os.Lstat(filepath.Join(dir, s)); err != nil {
						p.errorf(sv.Line, f+".src", "%s does not exist in the module directory", s)
					} else {
						fc.Src = s
					}
				}
			}
			if dv, ok := ff["dst"]; ok {
				if s := p.str(dv, f+".dst"); s != "" {
					if !path.IsAbs(s) {
						p.errorf(dv.Line, f+".dst", "%q must be an absolute path in the image, such as /app/", s)
					} else {
						fc.Dst = s
					}
				}
			}
			spec.Files = append(spec.Files, fc)
		}
	}
	return spec
}

// insideDir checks that rel, a path from module.yaml or a Dockerfile, is
// relative and stays inside dir, following symlinks. It returns rel
// cleaned.
func insideDir(dir, rel string) (string, error) {
	if rel == "" {
		return "", errors.New("empty path")
	}
	if filepath.IsAbs(rel) || path.IsAbs(rel) || filepath.VolumeName(rel) != "" {
		return "", fmt.Errorf("%s is an absolute path; paths are relative to the module directory and stay inside it", rel)
	}
	clean := filepath.Clean(filepath.FromSlash(rel))
	if clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("%s escapes the module directory; paths stay inside it (copy the files in, or move module.yaml up)", rel)
	}
	full := filepath.Join(dir, clean)
	if resolved, err := filepath.EvalSymlinks(full); err == nil && !within(dir, resolved) {
		return "", fmt.Errorf("%s is a symlink to %s, outside the module directory; paths stay inside it", rel, resolved)
	}
	return clean, nil
}

// within reports whether p is dir or below it (both absolute, clean).
func within(dir, p string) bool {
	if p == dir {
		return true
	}
	return strings.HasPrefix(p, strings.TrimSuffix(dir, string(filepath.Separator))+string(filepath.Separator))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// platformsOf parses a module's (already checked) platform strings.
func platformsOf(list []string) ([]v1.Platform, error) {
	out := make([]v1.Platform, 0, len(list))
	seen := map[string]bool{}
	for _, s := range list {
		for _, part := range strings.Split(s, ",") {
			if strings.TrimSpace(part) == "" {
				continue
			}
			pl, err := ParsePlatform(part)
			if err != nil {
				return nil, err
			}
			if !seen[pl.String()] {
				seen[pl.String()] = true
				out = append(out, pl)
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no platform given")
	}
	return out, nil
}
