// Package config loads outpost's configuration with a local viper instance.
//
// Precedence, highest first: a flag set on the command line, an environment
// variable (OUTPOST_ + the key in upper case with '-' as '_'), the config file,
// the flag's default. Config file keys are flag names. A missing default config
// file is fine; a file named explicitly must exist; a broken file is an error
// that names the file, the line and the key.
//
// The hub and the daemon each have a section of their own, so that one file
// serves a machine that runs both:
//
//	connection-string: HostName=…   # top level: every command
//	hub:
//	  data: /var/lib/outpost/hub    # the hub's commands (hub.data)
//	daemon:
//	  data: /var/lib/outpost        # the daemon's commands (daemon.data)
//
// For a command of a part, a key of its section wins over the same key at
// the top level, and OUTPOST_HUB_DATA (say) over OUTPOST_DATA. The data dir
// is the one key parts never share (PartKeys): `data` at the top level is the
// daemon's (as it was before sections); the hub reads hub.data only, and
// commands of no part (quickstart) never read it from the file.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/outpost-edge/outpost/internal/suggest"
)

// EnvPrefix is the prefix of every environment variable outpost reads.
const EnvPrefix = "OUTPOST"

// Aliases maps a flag name to the config key it sets when the two differ.
// The global --hub flag sets the connection-string key (OUTPOST_CONNECTION_STRING).
var Aliases = map[string]string{"hub": "connection-string"}

// KeyFor returns the config key a flag sets.
func KeyFor(flag string) string {
	if k, ok := Aliases[flag]; ok {
		return k
	}
	return flag
}

// Sections are the parts with a section of their own in the config file.
var Sections = []string{"hub", "daemon", "registry"}

// PartKeys are the keys that, at the top level of the config file, belong to
// one part only: the other parts never read them from there.
var PartKeys = map[string]string{"data": "daemon"}

// EnvVar returns the environment variable that sets key.
func EnvVar(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
}

// DefaultFiles are the config files looked for, in order, when none is named.
func DefaultFiles() []string {
	var files []string
	if dir, err := os.UserConfigDir(); err == nil {
		files = append(files, filepath.Join(dir, "outpost", "config.yaml"))
	}
	return append(files, "/etc/outpost/config.yaml")
}

// Source says where the configuration came from.
type Source struct {
	File     string // the file read, "" when none
	Explicit bool   // named by --config or OUTPOST_CONFIG
}

// Load builds the configuration for one command. file is the --config value
// ("" to look in OUTPOST_CONFIG, then DefaultFiles). known holds every key a
// config file may set with the pflag type of its value ("string", "bool",
// "int", "duration", "stringSlice", …); flags are the command's flags, bound
// so that a flag set on the command line wins.
func Load(file string, known map[string]string, flags *pflag.FlagSet) (*viper.Viper, Source, error) {
	return LoadSection(file, known, flags, "")
}

// LoadSection is Load for a command of a part with a section in the config
// file (one of Sections, or "" for none); see the package documentation.
func LoadSection(file string, known map[string]string, flags *pflag.FlagSet, section string) (*viper.Viper, Source, error) {
	v := viper.New()
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	if section == "" {
		v.AutomaticEnv()
	} else {
		for key := range known { // OUTPOST_HUB_DATA, then OUTPOST_DATA
			if err := v.BindEnv(key, EnvVar(section+"-"+key), EnvVar(key)); err != nil {
				return nil, Source{}, err
			}
		}
	}

	src := Source{File: file, Explicit: file != ""}
	if file == "" {
		if env := os.Getenv(EnvPrefix + "_CONFIG"); env != "" {
			src = Source{File: env, Explicit: true}
		}
	}
	var data []byte
	if src.Explicit {
		b, err := os.ReadFile(src.File)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, src, fmt.Errorf("config file %s does not exist: create it or drop --config", src.File)
			}
			return nil, src, fmt.Errorf("read config file: %w", err)
		}
		data = b
	} else {
		src.File = ""
		for _, f := range DefaultFiles() {
			b, err := os.ReadFile(f)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, src, fmt.Errorf("read config file: %w", err)
			}
			src.File, data = f, b
			break
		}
	}
	shadowed := map[string]int{} // part keys of another part at the top level, by line
	if src.File != "" {
		f, err := parse(src.File, data, known)
		if err != nil {
			return nil, src, err
		}
		m := f.top
		for key, part := range PartKeys {
			if _, ok := m[key]; ok && part != section {
				if section != "" { // a command of no part (quickstart) just ignores it
					shadowed[key] = f.lines[key]
				}
				delete(m, key)
			}
		}
		for key, val := range f.sections[section] {
			m[key] = val
			delete(shadowed, key)
		}
		if err := v.MergeConfigMap(m); err != nil {
			return nil, src, fmt.Errorf("config file %s: %w", src.File, err)
		}
	}
	if flags != nil {
		var bindErr error
		flags.VisitAll(func(f *pflag.Flag) {
			if f.Name == "config" {
				return
			}
			if err := v.BindPFlag(KeyFor(f.Name), f); err != nil && bindErr == nil {
				bindErr = err
			}
		})
		if bindErr != nil {
			return nil, src, bindErr
		}
	}
	// A part key the file sets for another part, which this part would
	// otherwise fall back from: say so rather than use a default silently.
	for key, line := range shadowed {
		if flags == nil {
			break
		}
		fl := flags.Lookup(key)
		if fl == nil || fl.Changed || os.Getenv(EnvVar(section+"-"+key)) != "" || os.Getenv(EnvVar(key)) != "" {
			continue
		}
		return nil, src, fmt.Errorf("config file %s:%d: key %q at the top level is the %s's; the %s reads %s.%s: "+
			"set it under a %q section (or pass --%s)", src.File, line, key, PartKeys[key], section, section, key, section+":", key)
	}
	return v, src, nil
}

// fileConfig is a parsed config file.
type fileConfig struct {
	top      map[string]any
	lines    map[string]int // of the top-level keys
	sections map[string]map[string]any
}

// parse reads a YAML config file and checks every key against known, so that
// a typo or a value of the wrong type is an error naming file, line and key.
func parse(file string, data []byte, known map[string]string) (fileConfig, error) {
	f := fileConfig{top: map[string]any{}, lines: map[string]int{}, sections: map[string]map[string]any{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return f, fmt.Errorf("config file %s: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) == 0 { // empty file
		return f, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return f, fmt.Errorf("config file %s:%d: the file must be a mapping of keys to values (key: value)", file, root.Line)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, val := root.Content[i], root.Content[i+1]
		if slices.Contains(Sections, k.Value) && val.Kind == yaml.MappingNode {
			sec := map[string]any{}
			for j := 0; j+1 < len(val.Content); j += 2 {
				if err := parseKey(file, k.Value+".", val.Content[j], val.Content[j+1], known, sec); err != nil {
					return f, err
				}
			}
			f.sections[k.Value] = sec
			continue
		}
		if section, key, dotted := strings.Cut(k.Value, "."); dotted && slices.Contains(Sections, section) {
			if f.sections[section] == nil {
				f.sections[section] = map[string]any{}
			}
			kn := *k
			kn.Value = key
			if err := parseKey(file, section+".", &kn, val, known, f.sections[section]); err != nil {
				return f, err
			}
			continue
		}
		if err := parseKey(file, "", k, val, known, f.top); err != nil {
			return f, err
		}
		f.lines[k.Value] = k.Line
	}
	return f, nil
}

// parseKey checks one key (under prefix, "hub." say) and its value and adds
// it to out.
func parseKey(file, prefix string, k, val *yaml.Node, known map[string]string, out map[string]any) error {
	typ, ok := known[k.Value]
	if !ok {
		if alias, isAlias := Aliases[k.Value]; isAlias {
			return fmt.Errorf("config file %s:%d: key %q: write it as %q", file, k.Line, prefix+k.Value, prefix+alias)
		}
		return fmt.Errorf("config file %s:%d: unknown key %q%s", file, k.Line, prefix+k.Value, didYouMean(k.Value, known))
	}
	x, err := decodeValue(val, typ)
	if err != nil {
		return fmt.Errorf("config file %s:%d: key %q: %w", file, val.Line, prefix+k.Value, err)
	}
	out[k.Value] = x
	return nil
}

func decodeValue(n *yaml.Node, typ string) (any, error) {
	switch {
	case strings.HasSuffix(typ, "Slice") || strings.HasSuffix(typ, "Array"):
		var s []string
		if n.Kind == yaml.ScalarNode {
			return []string{n.Value}, nil
		}
		if err := n.Decode(&s); err != nil {
			return nil, fmt.Errorf("want a list of strings")
		}
		return s, nil
	case n.Kind != yaml.ScalarNode:
		return nil, fmt.Errorf("want a single %s value, not a %s", typ, kindName(n.Kind))
	case typ == "bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, fmt.Errorf("want true or false, got %q", n.Value)
		}
		return b, nil
	case strings.HasPrefix(typ, "int") || strings.HasPrefix(typ, "uint"):
		var i int64
		if err := n.Decode(&i); err != nil {
			return nil, fmt.Errorf("want a whole number, got %q", n.Value)
		}
		return i, nil
	case typ == "duration":
		d, err := time.ParseDuration(n.Value)
		if err != nil {
			return nil, fmt.Errorf("want a duration such as 30s or 5m, got %q", n.Value)
		}
		return d, nil
	default:
		return n.Value, nil
	}
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}

// didYouMean names the closest known key, if one is close.
func didYouMean(key string, known map[string]string) string {
	keys := make([]string, 0, len(known))
	for k := range known {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if best := suggest.Closest(key, keys); best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return " (see `outpost help` for the flags a config file may set)"
}
