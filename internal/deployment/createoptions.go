package deployment

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// IoT Edge keeps createOptions in the $edgeAgent twin as a JSON string. A
// string longer than a twin value may be is split into chunks stored under
// createOptions, createOptions01, createOptions02, … and joined in that
// order when read. IoT Edge writes chunks of 512 characters and reads at most
// 100 of them; so do we (512 bytes, cut between UTF-8 characters).
const (
	createOptionsChunkSize = 512
	maxCreateOptionsChunks = 100
)

// MaxCreateOptionsSize is the longest createOptions (compact JSON) a module
// can have: 100 chunks of 512 bytes. The twin's 32 KiB limit on all of
// $edgeAgent's desired properties usually binds first.
const MaxCreateOptionsSize = createOptionsChunkSize * maxCreateOptionsChunks

// splitCreateOptions cuts s into chunks of at most createOptionsChunkSize
// bytes without splitting a UTF-8 character.
func splitCreateOptions(s string) []string {
	var chunks []string
	for len(s) > createOptionsChunkSize {
		n := createOptionsChunkSize
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		chunks = append(chunks, s[:n])
		s = s[n:]
	}
	return append(chunks, s)
}

// chunkKey names the i-th createOptions chunk.
func chunkKey(i int) string {
	if i == 0 {
		return "createOptions"
	}
	return fmt.Sprintf("createOptions%02d", i)
}

var chunkKeyPattern = regexp.MustCompile(`(?i)^createOptions([0-9]*)$`)

// isChunkKey reports whether key is createOptions or one of its chunks.
func isChunkKey(key string) bool {
	return chunkKeyPattern.MatchString(key)
}

// joinCreateOptions reads the createOptions chunks among the members of an
// IoT Edge module's settings and returns them as one value: a string (the
// chunks joined), an object (written as an object instead of a string, as
// deployment templates do) or nil when there are none.
func (c *checker) joinCreateOptions(settings *value, path string) *value {
	type chunk struct {
		index int
		f     field
	}
	var chunks []chunk
	for _, f := range settings.fields {
		m := chunkKeyPattern.FindStringSubmatch(f.key)
		if m == nil {
			continue
		}
		i := 0
		if m[1] != "" {
			n, err := strconv.Atoi(m[1])
			if err != nil || n < 1 || n >= maxCreateOptionsChunks {
				c.errorf(f.line, join(path, f.key), "not a createOptions chunk: chunks are createOptions01 to createOptions%02d", maxCreateOptionsChunks-1)
				return nil
			}
			i = n
		}
		chunks = append(chunks, chunk{i, f})
	}
	if len(chunks) == 0 {
		return nil
	}
	sort.SliceStable(chunks, func(a, b int) bool { return chunks[a].index < chunks[b].index })
	for i, ch := range chunks {
		if ch.index != i {
			want := chunkKey(i)
			if i > 0 && chunks[i-1].index == ch.index {
				c.errorf(ch.f.line, join(path, ch.f.key), "repeats chunk %s", chunkKey(ch.index))
			} else {
				c.errorf(ch.f.line, join(path, ch.f.key), "%s is missing; createOptions chunks must follow each other (createOptions, createOptions01, createOptions02, …)", want)
			}
			return nil
		}
	}
	first := chunks[0].f.val
	if len(chunks) == 1 && (first.kind == kindObject || first.kind == kindNull) {
		return first
	}
	var b strings.Builder
	for _, ch := range chunks {
		if ch.f.val.kind != kindString {
			c.errorf(ch.f.val.line, join(path, ch.f.key), "must be a string holding JSON, not %s", ch.f.val.kind)
			return nil
		}
		b.WriteString(ch.f.val.str)
	}
	return &value{kind: kindString, str: b.String(), text: b.String(), line: first.line}
}

var (
	createOptionsFields = []string{"Cmd", "Entrypoint", "Env", "WorkingDir", "User", "Labels", "HostConfig", "ExposedPorts", "Healthcheck"}
	hostConfigFields    = []string{"Binds", "PortBindings"}
	portBindingFields   = []string{"HostIp", "HostPort"}
	healthcheckFields   = []string{"Test", "Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"}
	supportedOptions    = "Cmd, Entrypoint, Env, WorkingDir, User, Labels, ExposedPorts, Healthcheck, HostConfig.Binds and HostConfig.PortBindings"
)

// createOptions reads create options given as an object or as a string of
// JSON. Problems inside a string are reported at the string's line.
func (c *checker) createOptions(v *value, path string) CreateOptions {
	if v == nil || v.kind == kindNull {
		return CreateOptions{}
	}
	line := 0 // 0: report at the lines of the values themselves
	if v.kind == kindString {
		s := strings.TrimSpace(v.str)
		if s == "" || strings.EqualFold(s, "null") {
			return CreateOptions{} // as IoT Edge reads it
		}
		t, err := parseJSONText(s)
		if err != nil {
			c.errorf(v.line, path, "not valid JSON: %v", err)
			return CreateOptions{}
		}
		line = v.line
		v = t
	}
	at := func(x *value) int {
		if line > 0 {
			return line
		}
		return x.line
	}
	if v.kind != kindObject {
		c.errorf(at(v), path, "must be a JSON object of Docker create options, not %s", v.kind)
		return CreateOptions{}
	}
	raw := appendJSON(nil, v)
	if len(raw) > MaxCreateOptionsSize {
		c.errorf(at(v), path, "is %d bytes as compact JSON; at most %d fit in the $edgeAgent twin", len(raw), MaxCreateOptionsSize)
		return CreateOptions{}
	}
	co := CreateOptions{Raw: raw}
	r := optionReader{c: c, at: at}
	for _, f := range foldMembers(v, createOptionsFields) {
		p := join(path, f.key)
		switch canonical(f.key, createOptionsFields) {
		case "Cmd":
			co.Cmd = r.strings(f.val, p, true)
		case "Entrypoint":
			co.Entrypoint = r.strings(f.val, p, true)
		case "Env":
			co.Env = r.strings(f.val, p, false)
		case "WorkingDir":
			co.WorkingDir = r.str(f.val, p)
		case "User":
			co.User = r.str(f.val, p)
		case "Labels":
			co.Labels = r.labels(f.val, p)
		case "ExposedPorts":
			// Needed by Docker alongside PortBindings; nothing to apply.
		case "HostConfig":
			co.HostConfig = r.hostConfig(f.val, p)
		case "Healthcheck":
			co.Healthcheck = r.healthcheck(f.val, p)
		default:
			c.warnf(p, "not supported yet; ignored (supported: %s)", supportedOptions)
		}
	}
	return co
}

// canonical returns the name in known that key matches ignoring case, as
// Docker's decoder does, or "".
func canonical(key string, known []string) string {
	for _, k := range known {
		if strings.EqualFold(key, k) {
			return k
		}
	}
	return ""
}

// foldMembers returns v's members, dropping a member of known whose field
// is given again later in another case: Docker's decoder matches names
// ignoring case, and the last one wins.
func foldMembers(v *value, known []string) []field {
	out := make([]field, 0, len(v.fields))
	later := map[string]bool{} // known names given after the member
	for i := len(v.fields) - 1; i >= 0; i-- {
		f := v.fields[i]
		if name := canonical(f.key, known); name != "" {
			if later[name] {
				continue
			}
			later[name] = true
		}
		out = append(out, f)
	}
	slices.Reverse(out)
	return out
}

type optionReader struct {
	c  *checker
	at func(*value) int
}

func (r optionReader) str(v *value, path string) string {
	switch v.kind {
	case kindNull:
		return ""
	case kindString:
		return v.str
	}
	r.c.errorf(r.at(v), path, "must be a string, not %s", v.kind)
	return ""
}

// strings reads an array of strings; with orString a lone string is taken
// as a one-element array, as Docker does for Cmd and Entrypoint.
func (r optionReader) strings(v *value, path string, orString bool) []string {
	switch {
	case v.kind == kindNull:
		return nil
	case v.kind == kindString && orString:
		return []string{v.str}
	case v.kind != kindArray:
		want := "an array of strings"
		if orString {
			want += " or a string"
		}
		r.c.errorf(r.at(v), path, "must be %s, not %s", want, v.kind)
		return nil
	}
	out := make([]string, 0, len(v.items))
	for i, it := range v.items {
		if it.kind != kindString {
			r.c.errorf(r.at(it), fmt.Sprintf("%s[%d]", path, i), "must be a string, not %s", it.kind)
			continue
		}
		out = append(out, it.str)
	}
	return out
}

func (r optionReader) labels(v *value, path string) map[string]string {
	switch v.kind {
	case kindNull:
		return nil
	case kindObject:
	default:
		r.c.errorf(r.at(v), path, "must be an object of strings, not %s", v.kind)
		return nil
	}
	out := map[string]string{}
	for _, f := range v.fields {
		if f.val.kind != kindString {
			r.c.errorf(r.at(f.val), join(path, f.key), "must be a string, not %s", f.val.kind)
			continue
		}
		out[f.key] = f.val.str
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func (r optionReader) hostConfig(v *value, path string) HostConfig {
	var hc HostConfig
	switch v.kind {
	case kindNull:
		return hc
	case kindObject:
	default:
		r.c.errorf(r.at(v), path, "must be an object, not %s", v.kind)
		return hc
	}
	for _, f := range foldMembers(v, hostConfigFields) {
		p := join(path, f.key)
		switch canonical(f.key, hostConfigFields) {
		case "Binds":
			hc.Binds = r.strings(f.val, p, false)
		case "PortBindings":
			hc.PortBindings = r.portBindings(f.val, p)
		default:
			r.c.warnf(p, "not supported yet; ignored (supported: %s)", supportedOptions)
		}
	}
	return hc
}

// healthcheck reads Docker's HealthConfig, checked as Docker checks it.
func (r optionReader) healthcheck(v *value, path string) *Healthcheck {
	switch v.kind {
	case kindNull:
		return nil
	case kindObject:
	default:
		r.c.errorf(r.at(v), path, `must be an object such as {"Test": ["CMD", "/app/check"], "Interval": 30000000000}, not %s`, v.kind)
		return nil
	}
	var hc Healthcheck
	for _, f := range foldMembers(v, healthcheckFields) {
		p := join(path, f.key)
		switch canonical(f.key, healthcheckFields) {
		case "Test":
			hc.Test = r.strings(f.val, p, false)
			if len(hc.Test) == 0 {
				break
			}
			switch hc.Test[0] {
			case "NONE":
				if len(hc.Test) > 1 {
					r.c.errorf(r.at(f.val), p, `["NONE"] takes nothing after it`)
				}
			case "CMD":
				if len(hc.Test) < 2 {
					r.c.errorf(r.at(f.val), p, `["CMD"] needs a command: ["CMD", "/app/check", "arg"]`)
				}
			case "CMD-SHELL":
				if len(hc.Test) != 2 {
					r.c.errorf(r.at(f.val), p, `["CMD-SHELL"] takes one shell command: ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]`)
				}
			default:
				r.c.errorf(r.at(f.val), p, `must start with "NONE", "CMD" or "CMD-SHELL", not %q`, hc.Test[0])
			}
		case "Interval":
			hc.Interval = r.duration(f.val, p)
		case "Timeout":
			hc.Timeout = r.duration(f.val, p)
		case "StartPeriod":
			hc.StartPeriod = r.duration(f.val, p)
		case "StartInterval":
			r.c.warnf(p, "not supported yet; ignored (checks run every Interval from the start)")
		case "Retries":
			if n, ok := r.wholeNumber(f.val, p); ok {
				if n > math.MaxInt32 {
					r.c.errorf(r.at(f.val), p, "%d retries is too many", n)
				} else {
					hc.Retries = int(n)
				}
			}
		default:
			r.c.warnf(p, "unknown Healthcheck field; ignored (known: Test, Interval, Timeout, StartPeriod, Retries)")
		}
	}
	return &hc
}

// wholeNumber reads a number that is a whole number ≥ 0.
func (r optionReader) wholeNumber(v *value, path string) (int64, bool) {
	if v.kind != kindNumber {
		r.c.errorf(r.at(v), path, "must be a whole number, not %s", v.kind)
		return 0, false
	}
	n, err := strconv.ParseInt(v.str, 10, 64)
	if err != nil || n < 0 {
		r.c.errorf(r.at(v), path, "%s is not a whole number ≥ 0", v.str)
		return 0, false
	}
	return n, true
}

// duration reads a Docker duration: whole nanoseconds, 0 (inherit) or at
// least a millisecond.
func (r optionReader) duration(v *value, path string) time.Duration {
	n, ok := r.wholeNumber(v, path)
	if !ok {
		return 0
	}
	if n != 0 && n < int64(time.Millisecond) {
		r.c.errorf(r.at(v), path, "%s ns is less than a millisecond; durations are in nanoseconds (30 s is 30000000000)", v.str)
		return 0
	}
	return time.Duration(n)
}

func (r optionReader) portBindings(v *value, path string) map[string][]PortBinding {
	switch v.kind {
	case kindNull:
		return nil
	case kindObject:
	default:
		r.c.errorf(r.at(v), path, `must be an object such as {"8883/tcp": [{"HostPort": "8883"}]}, not %s`, v.kind)
		return nil
	}
	out := map[string][]PortBinding{}
	for _, f := range v.fields {
		p := join(path, f.key)
		switch f.val.kind {
		case kindNull:
			out[f.key] = nil
			continue
		case kindArray:
		default:
			r.c.errorf(r.at(f.val), p, `must be an array of bindings such as [{"HostPort": "8883"}], not %s`, f.val.kind)
			continue
		}
		bindings := make([]PortBinding, 0, len(f.val.items))
		for i, it := range f.val.items {
			ip := fmt.Sprintf("%s[%d]", p, i)
			if it.kind != kindObject {
				r.c.errorf(r.at(it), ip, `must be an object such as {"HostPort": "8883"}, not %s`, it.kind)
				continue
			}
			var b PortBinding
			for _, g := range foldMembers(it, portBindingFields) {
				gp := join(ip, g.key)
				switch canonical(g.key, portBindingFields) {
				case "HostIp":
					b.HostIP = r.str(g.val, gp)
				case "HostPort":
					b.HostPort = r.str(g.val, gp)
				default:
					r.c.warnf(gp, "unknown port binding field; ignored (known: HostIp, HostPort)")
				}
			}
			bindings = append(bindings, b)
		}
		out[f.key] = bindings
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// marshalCreateOptions returns the create options AgentDesired writes: Raw,
// or the typed fields when Raw is nil. It returns "" when there are none.
func marshalCreateOptions(co CreateOptions) (string, error) {
	if co.Raw != nil {
		v, err := parseJSONText(string(co.Raw))
		if err != nil {
			return "", fmt.Errorf("not valid JSON: %v", err)
		}
		if v.kind != kindObject {
			return "", fmt.Errorf("must be a JSON object, not %s", v.kind)
		}
		return string(appendJSON(nil, v)), nil
	}
	b, err := json.Marshal(co)
	if err != nil {
		return "", err
	}
	if string(b) == "{}" {
		return "", nil
	}
	return string(b), nil
}
