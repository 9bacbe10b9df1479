package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/outpost-edge/outpost/internal/suggest"
)

// Dockerfile support: the subset outpost builds without a daemon and
// without running anything inside the image (DESIGN "Images"): FROM (one
// stage), COPY, ADD of local files, ENV, ARG, WORKDIR, ENTRYPOINT, CMD,
// LABEL, EXPOSE, USER, plus STOPSIGNAL, VOLUME and MAINTAINER, which only
// set the config. Each COPY or ADD makes one layer.

// dockerfile is a parsed Dockerfile: its instructions, checked for what
// outpost cannot do, not yet evaluated (variables are expanded per
// platform).
type dockerfile struct {
	file   string // as named in messages
	escape rune
	insts  []instruction
	from   int // index of the FROM instruction
}

// instruction is one Dockerfile instruction, continuations joined.
type instruction struct {
	cmd   string // upper case
	args  string // the rest of the line, flags included
	line  int    // where it starts
	text  string // as written (continuations joined), for history
	flags map[string]string
	rest  string // args without the leading --flags
}

var (
	supportedInstructions = []string{"FROM", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "ENTRYPOINT", "CMD", "LABEL", "EXPOSE", "USER", "STOPSIGNAL", "VOLUME", "MAINTAINER"}
	knownInstructions     = append([]string{"RUN", "SHELL", "HEALTHCHECK", "ONBUILD"}, supportedInstructions...)
	directiveRE           = regexp.MustCompile(`^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`)
	varNameRE             = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*`)
)

// parseDockerfile reads a Dockerfile and reports, each with its line,
// instructions outpost cannot build: RUN (it would need a daemon and, for
// other CPUs, emulation), more than one FROM, COPY --from, unknown
// instructions.
func parseDockerfile(data []byte, file string) (*dockerfile, error) {
	df := &dockerfile{file: file, escape: '\\', from: -1}
	var problems []Problem
	bad := func(line int, format string, a ...any) {
		problems = append(problems, Problem{Line: line, Message: fmt.Sprintf(format, a...)})
	}
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")

	// Parser directives come first, before any instruction, comment or
	// blank line.
	i := 0
	for ; i < len(lines); i++ {
		m := directiveRE.FindStringSubmatch(strings.TrimSpace(lines[i]))
		if m == nil {
			break
		}
		switch strings.ToLower(m[1]) {
		case "escape":
			if m[2] != `\` && m[2] != "`" {
				bad(i+1, "escape must be \\ or `, not %q", m[2])
			} else {
				df.escape = rune(m[2][0])
			}
		case "syntax", "check":
		default:
			// docker takes unknown directives as comments
		}
	}

	var cur strings.Builder
	start := 0
	flush := func() {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return
		}
		cmd, args := text, ""
		if j := strings.IndexAny(text, " \t"); j >= 0 {
			cmd, args = text[:j], strings.TrimSpace(text[j:])
		}
		df.insts = append(df.insts, instruction{cmd: strings.ToUpper(cmd), args: args, line: start, text: text})
	}
	inCont := false
	for ; i < len(lines); i++ {
		raw := lines[i]
		trimmed := strings.TrimSpace(raw)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && !inCont) {
			continue // comments, also inside continuations
		}
		if trimmed == "" {
			continue // an empty continuation line
		}
		if !inCont {
			start = i + 1
		}
		line := strings.TrimRight(raw, " \t")
		if strings.HasSuffix(line, string(df.escape)) && !strings.HasSuffix(line, string(df.escape)+string(df.escape)) {
			cur.WriteString(strings.TrimSuffix(line, string(df.escape)))
			inCont = true
			continue
		}
		cur.WriteString(line)
		inCont = false
		flush()
	}
	flush()

	for k := range df.insts {
		in := &df.insts[k]
		if err := in.parseFlags(); err != nil {
			bad(in.line, "%s: %v", in.cmd, err)
			continue
		}
		if !contains(knownInstructions, in.cmd) {
			msg := fmt.Sprintf("unknown instruction %s", in.cmd)
			if s := suggest.Closest(in.cmd, knownInstructions); s != "" {
				msg += " (did you mean " + s + "?)"
			}
			bad(in.line, "%s", msg)
			continue
		}
		if df.from < 0 && in.cmd != "FROM" && in.cmd != "ARG" {
			bad(in.line, "%s before FROM; a Dockerfile starts with FROM (ARG may come before it)", in.cmd)
			continue
		}
		switch in.cmd {
		case "RUN":
			bad(in.line, "RUN is not supported: outpost builds images without a Docker daemon and without emulating other CPUs, so it cannot run commands inside the image. Build the program outside the image and COPY it in — for Go, use `build: {go: ./cmd/NAME}` in module.yaml, which cross-compiles for every platform; for other files, `build: {files: [...]}`")
		case "SHELL", "HEALTHCHECK", "ONBUILD":
			bad(in.line, "%s is not supported yet; outpost's Dockerfile subset is FROM, COPY, ADD (local files), ENV, ARG, WORKDIR, ENTRYPOINT, CMD, LABEL, EXPOSE, USER, STOPSIGNAL, VOLUME", in.cmd)
		case "FROM":
			if df.from >= 0 {
				bad(in.line, "a second FROM: multi-stage builds are not supported (outpost runs nothing inside images, so there is nothing to build in an earlier stage); use one FROM, and build binaries with `build: go` in module.yaml")
				continue
			}
			df.from = k
			if _, ok := in.flags["platform"]; ok {
				bad(in.line, "FROM --platform is not supported: the platforms come from module.yaml (or --platform), and outpost picks each one from the base's index")
			}
			for f := range in.flags {
				if f != "platform" {
					bad(in.line, "FROM: unknown flag --%s", f)
				}
			}
			words := strings.Fields(in.rest)
			if len(words) != 1 && !(len(words) == 3 && strings.EqualFold(words[1], "AS")) {
				bad(in.line, "FROM takes an image and an optional AS name (FROM scratch, FROM alpine:3.20 AS base)")
			}
		case "COPY", "ADD":
			for f, v := range in.flags {
				switch f {
				case "from":
					bad(in.line, "%s --from=%s: multi-stage builds are not supported; copy files from the module directory", in.cmd, v)
				case "chown", "chmod", "link":
				default:
					bad(in.line, "%s: unsupported flag --%s (outpost takes --chown with numeric ids, --chmod and --link)", in.cmd, f)
				}
			}
			if strings.Contains(in.rest, "<<") {
				bad(in.line, "%s with a here-document is not supported; put the content in a file and COPY it", in.cmd)
			}
		}
	}
	if df.from < 0 && len(problems) == 0 {
		bad(0, "no FROM: a Dockerfile starts with FROM scratch, or FROM an image")
	}
	if len(problems) > 0 {
		return nil, &ModuleError{File: file, Problems: problems}
	}
	return df, nil
}

// parseFlags splits leading --name=value flags off the arguments of the
// instructions that take flags.
func (in *instruction) parseFlags() error {
	in.flags = map[string]string{}
	rest := in.args
	takesFlags := in.cmd == "FROM" || in.cmd == "COPY" || in.cmd == "ADD"
	for takesFlags && strings.HasPrefix(rest, "--") {
		word, after := rest, ""
		if j := strings.IndexAny(rest, " \t"); j >= 0 {
			word, after = rest[:j], rest[j:]
		}
		name, value, ok := strings.Cut(strings.TrimPrefix(word, "--"), "=")
		if name == "" {
			return fmt.Errorf("bad flag %q", word)
		}
		if !ok {
			value = "true"
		}
		in.flags[strings.ToLower(name)] = value
		rest = strings.TrimSpace(after)
	}
	in.rest = rest
	return nil
}

// dfStep is what one build step made: a layer, or a config change only
// (files nil). Each Dockerfile instruction is one; go and files builds
// make one layer.
type dfStep struct {
	createdBy string
	files     *layerFiles // nil for config-only instructions
}

// dfEval evaluates a Dockerfile for one platform.
type dfEval struct {
	df      *dockerfile
	dir     string // the module directory (absolute, symlinks resolved)
	p       v1.Platform
	args    map[string]string // declared ARGs with their values
	cfg     *v1.ConfigFile
	workdir string
	cmdSet  bool
}

// platformArgs are the ARGs docker predefines for the target platform; in
// outpost they are always defined.
func platformArgs(p v1.Platform) map[string]string {
	return map[string]string{
		"TARGETPLATFORM": p.String(),
		"TARGETOS":       p.OS,
		"TARGETARCH":     p.Architecture,
		"TARGETVARIANT":  p.Variant,
		"BUILDPLATFORM":  p.String(),
		"BUILDOS":        p.OS,
		"BUILDARCH":      p.Architecture,
		"BUILDVARIANT":   p.Variant,
	}
}

// baseRef returns the FROM image for platform p, with ARGs declared before
// FROM expanded.
func (df *dockerfile) baseRef(p v1.Platform) (string, error) {
	args := platformArgs(p)
	e := &dfEval{df: df, args: args, cfg: &v1.ConfigFile{}}
	for _, in := range df.insts[:df.from] {
		if err := e.arg(in); err != nil {
			return "", df.problem(in, err)
		}
	}
	in := df.insts[df.from]
	words, err := e.words(in.rest)
	if err != nil || len(words) == 0 {
		return "", df.problem(in, fmt.Errorf("FROM: %v", err))
	}
	return words[0], nil
}

func (df *dockerfile) problem(in instruction, err error) error {
	return &ModuleError{File: df.file, Problems: []Problem{{Line: in.line, Message: err.Error()}}}
}

// eval runs the instructions after FROM for platform p on cfg (the base's
// config, changed in place) and returns the steps, each COPY or ADD a layer.
func (df *dockerfile) eval(dir string, p v1.Platform, cfg *v1.ConfigFile) ([]dfStep, error) {
	e := &dfEval{df: df, dir: dir, p: p, args: platformArgs(p), cfg: cfg, workdir: cfg.Config.WorkingDir}
	if e.workdir == "" {
		e.workdir = "/"
	}
	var steps []dfStep
	for _, in := range df.insts[df.from+1:] {
		step, err := e.run(in)
		if err != nil {
			return nil, df.problem(in, err)
		}
		steps = append(steps, step)
	}
	return steps, nil
}

func (e *dfEval) lookup(name string) (string, bool) {
	for i := len(e.cfg.Config.Env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(e.cfg.Config.Env[i], "="); ok && k == name {
			return v, true
		}
	}
	v, ok := e.args[name]
	return v, ok
}

func (e *dfEval) words(s string) ([]string, error) {
	return shellWords(s, e.df.escape, e.lookup)
}

func (e *dfEval) run(in instruction) (dfStep, error) {
	step := dfStep{createdBy: in.text}
	cfg := &e.cfg.Config
	switch in.cmd {
	case "ARG":
		return step, e.arg(in)
	case "ENV":
		pairs, err := e.pairs(in, true)
		if err != nil {
			return step, err
		}
		for _, kv := range pairs {
			cfg.Env = setEnv(cfg.Env, kv.Name, kv.Value)
		}
	case "LABEL":
		pairs, err := e.pairs(in, false)
		if err != nil {
			return step, err
		}
		for _, kv := range pairs {
			if cfg.Labels == nil {
				cfg.Labels = map[string]string{}
			}
			cfg.Labels[kv.Name] = kv.Value
		}
	case "MAINTAINER":
		e.cfg.Author = in.rest
	case "WORKDIR":
		w, err := e.oneWord(in)
		if err != nil {
			return step, err
		}
		e.workdir = path.Join(e.workdir, w)
		if path.IsAbs(w) {
			e.workdir = path.Clean(w)
		}
		cfg.WorkingDir = e.workdir
	case "USER":
		u, err := e.oneWord(in)
		if err != nil {
			return step, err
		}
		cfg.User = u
	case "STOPSIGNAL":
		s, err := e.oneWord(in)
		if err != nil {
			return step, err
		}
		cfg.StopSignal = s
	case "EXPOSE":
		words, err := e.words(in.rest)
		if err != nil {
			return step, err
		}
		if len(words) == 0 {
			return step, errors.New("EXPOSE needs a port, such as 8080 or 53/udp")
		}
		for _, w := range words {
			m := portRE.FindStringSubmatch(strings.ToLower(w))
			if n, _ := strconv.Atoi(firstGroup(m)); m == nil || n < 1 || n > 65535 {
				return step, fmt.Errorf("EXPOSE: %q is not a port: a number from 1 to 65535, optionally with /tcp, /udp or /sctp", w)
			}
			port := strings.ToLower(w)
			if m[2] == "" {
				port += "/tcp"
			}
			if cfg.ExposedPorts == nil {
				cfg.ExposedPorts = map[string]struct{}{}
			}
			cfg.ExposedPorts[port] = struct{}{}
		}
	case "VOLUME":
		list, err := e.list(in)
		if err != nil {
			return step, err
		}
		for _, v := range list {
			if cfg.Volumes == nil {
				cfg.Volumes = map[string]struct{}{}
			}
			cfg.Volumes[v] = struct{}{}
		}
	case "ENTRYPOINT", "CMD":
		cmd := execForm(in.rest)
		if cmd == nil {
			if strings.TrimSpace(in.rest) == "" {
				return step, fmt.Errorf("%s needs a command, such as %s [\"/app\"]", in.cmd, in.cmd)
			}
			cmd = []string{"/bin/sh", "-c", in.rest}
		}
		if in.cmd == "CMD" {
			cfg.Cmd, e.cmdSet = cmd, true
		} else {
			cfg.Entrypoint = cmd
			if !e.cmdSet {
				cfg.Cmd = nil // docker: a new ENTRYPOINT drops the base's CMD
			}
		}
	case "COPY", "ADD":
		lf, err := e.copy(in)
		if err != nil {
			return step, err
		}
		step.files = lf
	}
	return step, nil
}

func firstGroup(m []string) string {
	if m == nil {
		return ""
	}
	return m[1]
}

// arg declares ARG NAME[=default] (several may be given).
func (e *dfEval) arg(in instruction) error {
	words, err := shellWords(in.rest, e.df.escape, e.lookup)
	if err != nil {
		return fmt.Errorf("ARG: %v", err)
	}
	if len(words) == 0 {
		return errors.New("ARG needs a name, such as ARG VERSION=1.0")
	}
	for _, w := range words {
		name, value, hasValue := strings.Cut(w, "=")
		if !envNameRE.MatchString(name) {
			return fmt.Errorf("ARG: %q is not a variable name", name)
		}
		if _, predefined := e.args[name]; predefined && !hasValue {
			continue
		}
		e.args[name] = value
	}
	return nil
}

func (e *dfEval) oneWord(in instruction) (string, error) {
	words, err := e.words(in.rest)
	if err != nil {
		return "", fmt.Errorf("%s: %v", in.cmd, err)
	}
	if len(words) != 1 {
		return "", fmt.Errorf("%s takes one argument (got %d)", in.cmd, len(words))
	}
	return words[0], nil
}

// list reads the JSON form ["a", "b"] with variables expanded, or words.
func (e *dfEval) list(in instruction) ([]string, error) {
	if l := execForm(in.rest); l != nil {
		out := make([]string, len(l))
		for i, s := range l {
			v, err := expandOnly(s, e.lookup)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", in.cmd, err)
			}
			out[i] = v
		}
		return out, nil
	}
	words, err := e.words(in.rest)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", in.cmd, err)
	}
	return words, nil
}

// pairs reads ENV or LABEL: KEY=value ... or the old KEY value form.
func (e *dfEval) pairs(in instruction, env bool) ([]EnvVar, error) {
	words, err := e.words(in.rest)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", in.cmd, err)
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("%s needs NAME=value", in.cmd)
	}
	var out []EnvVar
	if !strings.Contains(words[0], "=") {
		// ENV NAME the rest of the line
		line := strings.TrimSpace(in.rest)
		name, rest := line, ""
		if j := strings.IndexAny(line, " \t"); j >= 0 {
			name, rest = line[:j], line[j:]
		}
		v, err := shellWord(strings.TrimSpace(rest), e.df.escape, e.lookup)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", in.cmd, err)
		}
		out = append(out, EnvVar{Name: name, Value: v})
	} else {
		for _, w := range words {
			k, v, ok := strings.Cut(w, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("%s: %q is not NAME=value", in.cmd, w)
			}
			out = append(out, EnvVar{Name: k, Value: v})
		}
	}
	for _, kv := range out {
		if env && !envNameRE.MatchString(kv.Name) {
			return nil, fmt.Errorf("%s: %q is not a variable name", in.cmd, kv.Name)
		}
	}
	return out, nil
}

// copy evaluates COPY or ADD into a layer.
func (e *dfEval) copy(in instruction) (*layerFiles, error) {
	var o copyOpts
	if v, ok := in.flags["chmod"]; ok {
		n, err := strconv.ParseUint(v, 8, 32)
		if err != nil || n > 0o7777 {
			return nil, fmt.Errorf("%s --chmod=%s: not an octal mode such as 0755", in.cmd, v)
		}
		o.chmod, o.hasChmod = int64(n), true
	}
	if v, ok := in.flags["chown"]; ok {
		u, g, hasGroup := strings.Cut(v, ":")
		uid, err1 := strconv.Atoi(u)
		gid := uid
		var err2 error
		if hasGroup {
			gid, err2 = strconv.Atoi(g)
		}
		if err1 != nil || err2 != nil || uid < 0 || gid < 0 {
			return nil, fmt.Errorf("%s --chown=%s: use numeric ids (uid or uid:gid); outpost has no /etc/passwd in the image to look names up in", in.cmd, v)
		}
		o.uid, o.gid = uid, gid
	}
	items, err := e.list(in)
	if err != nil {
		return nil, err
	}
	if len(items) < 2 {
		return nil, fmt.Errorf("%s needs at least one source and a destination (%s app /app/)", in.cmd, in.cmd)
	}
	srcs, dst := items[:len(items)-1], items[len(items)-1]
	if !path.IsAbs(dst) {
		trailing := strings.HasSuffix(dst, "/") || dst == "." || dst == "./"
		dst = path.Join(e.workdir, dst)
		if trailing {
			dst += "/"
		}
	}
	var all []string
	for _, s := range srcs {
		if in.cmd == "ADD" && (strings.Contains(s, "://") || strings.HasPrefix(s, "git@")) {
			return nil, fmt.Errorf("ADD %s: remote sources are not supported (builds use no network); download it into the module directory first and COPY it", s)
		}
		matched, err := globSources(e.dir, s)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", in.cmd, err)
		}
		all = append(all, matched...)
	}
	if len(all) > 1 && !strings.HasSuffix(dst, "/") {
		return nil, fmt.Errorf("%s: with more than one source the destination must be a directory ending in / (got %s)", in.cmd, dst)
	}
	lf := newLayerFiles()
	for _, s := range all {
		if in.cmd == "ADD" {
			if kind := archiveKind(e.dir, s); kind != "" {
				return nil, fmt.Errorf("ADD %s: docker would unpack this %s archive, which outpost does not do yet; unpack it into the module directory and COPY the files", s, kind)
			}
		}
		if err := copyInto(lf, e.dir, s, dst, o, in.cmd); err != nil {
			return nil, err
		}
	}
	return lf, nil
}

// archiveKind tells by its first bytes whether a file is an archive ADD
// would unpack.
func archiveKind(dir, rel string) string {
	f, err := os.Open(path.Join(dir, rel))
	if err != nil {
		return ""
	}
	defer f.Close()
	var b [512]byte
	n, _ := f.Read(b[:])
	switch {
	case n >= 2 && b[0] == 0x1f && b[1] == 0x8b:
		return "gzip"
	case n >= 3 && string(b[:3]) == "BZh":
		return "bzip2"
	case n >= 6 && string(b[:6]) == "\xfd7zXZ\x00":
		return "xz"
	case n >= 4 && string(b[:4]) == "\x28\xb5\x2f\xfd":
		return "zstd"
	case n >= 262 && string(b[257:262]) == "ustar":
		return "tar"
	}
	return ""
}

// execForm parses the JSON array form ["a", "b"]; nil when s is not one.
func execForm(s string) []string {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "[") {
		return nil
	}
	var l []string
	if json.Unmarshal([]byte(s), &l) != nil {
		return nil
	}
	return l
}

// setEnv sets NAME=value in env, in place of an earlier value.
func setEnv(env []string, name, value string) []string {
	for i, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == name {
			out := append([]string(nil), env...)
			out[i] = name + "=" + value
			return out
		}
	}
	return append(append([]string(nil), env...), name+"="+value)
}

// shellWords splits s into words as docker's Dockerfile lexer does:
// whitespace separates, quotes group ('…' literally, "…" with variables
// expanded), the escape character escapes, and $VAR, ${VAR}, ${VAR:-word}
// and ${VAR:+word} expand (without splitting the result).
func shellWords(s string, escape rune, lookup func(string) (string, bool)) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == escape:
			inWord = true
			if i+1 < len(rs) {
				i++
				cur.WriteRune(rs[i])
			}
		case c == '\'':
			inWord = true
			j := i + 1
			for j < len(rs) && rs[j] != '\'' {
				j++
			}
			if j >= len(rs) {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(string(rs[i+1 : j]))
			i = j
		case c == '"':
			inWord = true
			j := i + 1
			for ; j < len(rs) && rs[j] != '"'; j++ {
				switch {
				case rs[j] == escape && j+1 < len(rs) && strings.ContainsRune(`"$`+string(escape), rs[j+1]):
					j++
					cur.WriteRune(rs[j])
				case rs[j] == '$':
					v, n, err := expandAt(rs, j, escape, lookup)
					if err != nil {
						return nil, err
					}
					cur.WriteString(v)
					j += n - 1
				default:
					cur.WriteRune(rs[j])
				}
			}
			if j >= len(rs) {
				return nil, errors.New("unterminated double quote")
			}
			i = j
		case c == '$':
			inWord = true
			v, n, err := expandAt(rs, i, escape, lookup)
			if err != nil {
				return nil, err
			}
			cur.WriteString(v)
			i += n - 1
		default:
			inWord = true
			cur.WriteRune(c)
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// shellWord is shellWords for the rest of a line taken as one value (the
// old ENV NAME value form): the words are joined with single spaces.
func shellWord(s string, escape rune, lookup func(string) (string, bool)) (string, error) {
	words, err := shellWords(s, escape, lookup)
	if err != nil {
		return "", err
	}
	return strings.Join(words, " "), nil
}

// expandOnly expands variables in s without word splitting or quotes.
func expandOnly(s string, lookup func(string) (string, bool)) (string, error) {
	var b strings.Builder
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		if rs[i] == '$' {
			v, n, err := expandAt(rs, i, 0, lookup)
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			i += n - 1
			continue
		}
		b.WriteRune(rs[i])
	}
	return b.String(), nil
}

// expandAt expands the variable reference at rs[i] ('$') and returns its
// value and how many runes it took.
func expandAt(rs []rune, i int, escape rune, lookup func(string) (string, bool)) (string, int, error) {
	rest := string(rs[i+1:])
	if strings.HasPrefix(rest, "{") {
		end := strings.IndexRune(rest, '}')
		if end < 0 {
			return "", 0, errors.New("missing } in ${…}")
		}
		body := rest[1:end]
		n := len([]rune(rest[:end+1])) + 1
		name := varNameRE.FindString(body)
		if name == "" {
			return "", 0, fmt.Errorf("bad substitution ${%s}", body)
		}
		v, set := lookup(name)
		op := body[len(name):]
		switch {
		case op == "":
			return v, n, nil
		case strings.HasPrefix(op, ":-"):
			if !set || v == "" {
				w, err := expandOnly(op[2:], lookup)
				return w, n, err
			}
			return v, n, nil
		case strings.HasPrefix(op, ":+"):
			if set && v != "" {
				w, err := expandOnly(op[2:], lookup)
				return w, n, err
			}
			return "", n, nil
		case strings.HasPrefix(op, "-"):
			if !set {
				w, err := expandOnly(op[1:], lookup)
				return w, n, err
			}
			return v, n, nil
		case strings.HasPrefix(op, "+"):
			if set {
				w, err := expandOnly(op[1:], lookup)
				return w, n, err
			}
			return "", n, nil
		}
		return "", 0, fmt.Errorf("unsupported substitution ${%s}: outpost expands ${NAME}, ${NAME:-default} and ${NAME:+value}", body)
	}
	name := varNameRE.FindString(rest)
	if name == "" {
		return "$", 1, nil
	}
	v, _ := lookup(name)
	return v, len(name) + 1, nil
}
