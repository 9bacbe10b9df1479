package agent

import (
	"sort"
	"strings"
)

// envList is an environment in which a later value of a name replaces an
// earlier one, in the place of the first.
type envList struct {
	names []string
	vals  map[string]string
}

func newEnv() *envList { return &envList{vals: map[string]string{}} }

func (e *envList) add(kvs ...string) {
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		if k != "" {
			e.set(k, v)
		}
	}
}

func (e *envList) set(k, v string) {
	if _, ok := e.vals[k]; !ok {
		e.names = append(e.names, k)
	}
	e.vals[k] = v
}

func (e *envList) list() []string {
	out := make([]string, 0, len(e.names))
	for _, k := range e.names {
		out = append(out, k+"="+e.vals[k])
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
