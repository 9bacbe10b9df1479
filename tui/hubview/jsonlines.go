package hubview

import (
	"encoding/json"
	"strconv"
	"strings"
)

// jline is one line of an indented JSON document, with the path of the
// member it starts (a.b.c; "" for closing braces).
type jline struct {
	text string
	path string
}

// jsonLines renders v as indented JSON with sorted keys ($-keys last), one
// jline per line.
func jsonLines(v any) []jline {
	var out []jline
	writeJSON(&out, v, "", "", 0, true)
	return out
}

func writeJSON(out *[]jline, v any, path, prefix string, depth int, last bool) {
	ind := strings.Repeat("  ", depth)
	comma := ","
	if last {
		comma = ""
	}
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			*out = append(*out, jline{ind + prefix + "{}" + comma, path})
			return
		}
		*out = append(*out, jline{ind + prefix + "{", path})
		keys := sortedKeys(x)
		for i, k := range keys {
			writeJSON(out, x[k], joinKey(path, k), strconv.Quote(k)+": ", depth+1, i == len(keys)-1)
		}
		*out = append(*out, jline{ind + "}" + comma, ""})
	default:
		b, _ := json.Marshal(x)
		*out = append(*out, jline{ind + prefix + string(b) + comma, path})
	}
}

func joinKey(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// changedPaths returns the paths of members that are new or different in
// after compared with before (objects compared member by member).
func changedPaths(before, after any) map[string]bool {
	out := map[string]bool{}
	diffInto(out, before, after, "")
	return out
}

func diffInto(out map[string]bool, before, after any, path string) {
	bm, bok := before.(map[string]any)
	am, aok := after.(map[string]any)
	if bok && aok {
		for k, av := range am {
			if strings.HasPrefix(k, "$") {
				continue
			}
			diffInto(out, bm[k], av, joinKey(path, k))
		}
		return
	}
	bj, _ := json.Marshal(before)
	aj, _ := json.Marshal(after)
	if string(bj) != string(aj) && path != "" {
		out[path] = true
	}
}

// withoutMeta returns v without $metadata and $version members (a copy).
func withoutMeta(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	c := make(map[string]any, len(m))
	for k, x := range m {
		if k == "$metadata" || k == "$version" {
			continue
		}
		c[k] = withoutMeta(x)
	}
	return c
}
