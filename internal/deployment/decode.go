package deployment

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/suggest"
	"github.com/outpost-edge/outpost/internal/twin"
)

// Readers shared by the native and the IoT Edge decoders. Each reports its
// problems to the checker and returns a usable value (a default when the
// field is absent or wrong), so decoding goes on and finds every problem.

// members checks that v is an object and returns its members by key.
// Members whose key is not in known are reported: as errors when strict,
// else as warnings. Keys starting with '$' are skipped when the checker says
// so.
func (c *checker) members(v *value, path string, known []string, strict bool) map[string]field {
	if !c.isObject(v, path) {
		return nil
	}
	out := make(map[string]field, len(v.fields))
	for _, f := range v.fields {
		if c.skipDollar && strings.HasPrefix(f.key, "$") {
			continue
		}
		if !contains(known, f.key) {
			c.unknown(f, join(path, f.key), known, strict)
			continue
		}
		out[f.key] = f
	}
	return out
}

func (c *checker) unknown(f field, path string, known []string, strict bool) {
	hint := ""
	if s := suggest.Closest(f.key, known); s != "" {
		hint = " (did you mean " + s + "?)"
	} else if path == f.key && suggest.Closest(f.key, []string{"modulesContent"}) != "" {
		hint = " (did you mean modulesContent, the key of an IoT Edge manifest?)"
	}
	if strict {
		if hint == "" {
			hint = "; known fields here: " + strings.Join(known, ", ")
		}
		c.errorf(f.line, path, "unknown field%s", hint)
	} else {
		c.warnf(path, "unknown field; ignored%s", hint)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// isObject reports whether v is an object, reporting a problem if not.
func (c *checker) isObject(v *value, path string) bool {
	if v.kind != kindObject {
		c.errorf(v.line, path, "must be an object (a mapping), not %s", v.kind)
		return false
	}
	return true
}

// absent reports whether a member is missing or null.
func absent(f field, ok bool) bool {
	return !ok || f.val.kind == kindNull
}

// str reads an optional string.
func (c *checker) str(m map[string]field, key, path string) string {
	f, ok := m[key]
	if absent(f, ok) {
		return ""
	}
	p := join(path, key)
	if f.val.kind != kindString {
		c.errorf(f.val.line, p, "must be a string, not %s", f.val.kind)
		return ""
	}
	if msg := checkString(f.val.str); msg != "" {
		c.errorf(f.val.line, p, "%s", msg)
		return ""
	}
	return f.val.str
}

// scalarText reads an optional string, accepting a number or boolean as the
// text it was written with (YAML `version: 1.0` gives "1.0").
func (c *checker) scalarText(v *value, path string) string {
	if v.kind == kindNull {
		return ""
	}
	if !v.isScalar() {
		c.errorf(v.line, path, "must be a string, not %s", v.kind)
		return ""
	}
	if msg := checkString(v.text); msg != "" {
		c.errorf(v.line, path, "%s", msg)
		return ""
	}
	return v.text
}

func (c *checker) version(m map[string]field, path string) string {
	f, ok := m["version"]
	if !ok {
		return ""
	}
	return c.scalarText(f.val, join(path, "version"))
}

func (c *checker) image(m map[string]field, path string, line int) string {
	p := join(path, "image")
	f, ok := m["image"]
	if absent(f, ok) {
		if ok {
			line = f.line
		}
		c.errorf(line, p, "%s", checkImage(""))
		return ""
	}
	v := f.val
	if v.kind != kindString {
		c.errorf(v.line, p, "must be a string, not %s", v.kind)
		return ""
	}
	if msg := checkString(v.str); msg != "" {
		c.errorf(v.line, p, "%s", msg)
		return ""
	}
	if msg := checkImage(v.str); msg != "" {
		c.errorf(v.line, p, "%s", msg)
	}
	return v.str
}

func (c *checker) enum(m map[string]field, key, path, def string, allowed []string) string {
	f, ok := m[key]
	if absent(f, ok) {
		return def
	}
	s := c.str(m, key, path)
	if f.val.kind != kindString {
		return def
	}
	if msg := oneOf(s, allowed); msg != "" {
		c.errorf(f.val.line, join(path, key), "%s", msg)
		return def
	}
	return s
}

func (c *checker) startupOrder(m map[string]field, path string) int64 {
	f, ok := m["startupOrder"]
	if absent(f, ok) {
		return DefaultStartupOrder
	}
	p := join(path, "startupOrder")
	v := f.val
	if v.kind != kindNumber {
		c.errorf(v.line, p, "must be a whole number from 0 to %d, not %s", MaxStartupOrder, v.kind)
		return DefaultStartupOrder
	}
	n, err := strconv.ParseInt(v.str, 10, 64)
	if err != nil || n < 0 || n > MaxStartupOrder {
		c.errorf(v.line, p, "%s is not a whole number from 0 to %d (lower starts first; leave it out to start last)", v.str, MaxStartupOrder)
		return DefaultStartupOrder
	}
	return n
}

// envValue reads one environment variable's value: a string, or a number
// or boolean taken as the text it was written with.
func (c *checker) envValue(v *value, path string) (string, bool) {
	if !v.isScalar() {
		c.errorf(v.line, path, "must be a string, not %s", v.kind)
		return "", false
	}
	if msg := checkString(v.text); msg != "" {
		c.errorf(v.line, path, "%s", msg)
		return "", false
	}
	return v.text, true
}

func (c *checker) envName(f field, path string) bool {
	if msg := checkEnvName(f.key); msg != "" {
		c.errorf(f.line, path, "%s", msg)
		return false
	}
	return true
}

// credentials reads registryCredentials: name -> {address, username, password}.
func (c *checker) credentials(v *value, path string, strict bool) map[string]RegistryCredential {
	if v.kind == kindNull || !c.isObject(v, path) {
		return nil
	}
	out := map[string]RegistryCredential{}
	for _, f := range v.fields {
		if c.skipDollar && strings.HasPrefix(f.key, "$") {
			continue
		}
		p := join(path, f.key)
		if msg := checkTwinKey(f.key); msg != "" {
			c.errorf(f.line, p, "credential name %s", msg)
			continue
		}
		m := c.members(f.val, p, []string{"address", "username", "password"}, strict)
		if m == nil {
			continue
		}
		cred := RegistryCredential{
			Address:  c.str(m, "address", p),
			Username: c.str(m, "username", p),
			Password: c.str(m, "password", p),
		}
		var missing []string
		for _, k := range []string{"address", "username", "password"} {
			if ff, ok := m[k]; absent(ff, ok) || ff.val.kind == kindString && ff.val.str == "" {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			c.errorf(f.val.line, p, "missing %s; a registry credential needs address, username and password", strings.Join(missing, ", "))
			continue
		}
		out[f.key] = cred
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// desired reads a module's initial desired properties and checks them
// against the twin limits.
func (c *checker) desired(v *value, path string) json.RawMessage {
	if v.kind == kindNull {
		return nil
	}
	if !c.isObject(v, path) {
		return nil
	}
	raw := appendJSON(nil, v)
	if err := checkDesired(raw); err != nil {
		p, reason := twinProblem(err, path)
		line := v.line
		if n := lookup(v, strings.TrimPrefix(p, path)); n != nil {
			line = n.line
		}
		c.errorf(line, p, "%s", reason)
		return nil
	}
	return raw
}

// twinProblem turns an error of checkDesired into a path below path (the
// manifest path of the desired properties) and a reason.
func twinProblem(err error, path string) (string, string) {
	te, ok := err.(*twin.Error)
	if !ok {
		return path, err.Error()
	}
	rest, ok := strings.CutPrefix(te.Path, "properties.desired")
	if !ok {
		return path, te.Error()
	}
	return path + rest, te.Reason + " (twin limit)"
}

// twinTime is the time given to twins made only to check limits.
var twinTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// checkDesired applies doc as the desired properties of a new twin, which
// enforces every twin limit.
func checkDesired(doc []byte) error {
	_, err := twin.New("device", "module", twinTime).PatchDesired(doc, twinTime)
	return err
}

// lookup finds the value at a twin error path below v (such as `.a["b.c"][2]`),
// or returns nil.
func lookup(v *value, path string) *value {
	for path != "" && v != nil {
		switch {
		case path[0] == '.':
			path = path[1:]
			end := strings.IndexAny(path, ".[")
			if end < 0 {
				end = len(path)
			}
			v, path = v.get(path[:end]), path[end:]
		case strings.HasPrefix(path, `["`):
			q, err := strconv.QuotedPrefix(path[1:])
			if err != nil {
				return nil
			}
			key, _ := strconv.Unquote(q)
			v, path = v.get(key), strings.TrimPrefix(path[1+len(q):], "]")
		case path[0] == '[':
			end := strings.IndexByte(path, ']')
			i, err := strconv.Atoi(path[1:max(end, 1)])
			if end < 0 || err != nil || v.kind != kindArray || i < 0 || i >= len(v.items) {
				return nil
			}
			v, path = v.items[i], path[end+1:]
		default:
			return nil
		}
	}
	return v
}

// schema checks a schemaVersion against a rule.
func (c *checker) schemaVersion(m map[string]field, path string, line int, ok func(string) bool, supported string) string {
	p := join(path, "schemaVersion")
	f, present := m["schemaVersion"]
	if absent(f, present) {
		c.errorf(line, p, "missing; add schemaVersion: %s", supported)
		return ""
	}
	s := c.scalarText(f.val, p)
	if s == "" && f.val.kind == kindString {
		c.errorf(f.val.line, p, "empty; set it to %s", supported)
		return ""
	}
	if s != "" && !ok(s) {
		c.problems = append(c.problems, Problem{
			Path:    p,
			Message: fmt.Sprintf("%q is not supported (supported: %s)", s, supported),
			Line:    f.val.line,
			schema:  true,
		})
	}
	return s
}
