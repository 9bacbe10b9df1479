package registry

import (
	"fmt"
	"strconv"
	"strings"
)

// condition is a parsed target condition: it tells whether a device twin,
// as IoT Hub's JSON, is targeted.
type condition interface {
	Match(doc map[string]any) bool
}

// parseCondition parses a configuration's targetCondition.
//
// Stand-in until internal/query lands: path = 'string' | number | true |
// false, joined by AND. The query package's parser replaces it.
func parseCondition(s string) (condition, error) {
	var c andCondition
	pos := 0
	for _, part := range splitFold(s, " and ") {
		lhs, rhs, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("position %d: expected path = value", pos+1)
		}
		path := strings.TrimSpace(lhs)
		v := strings.TrimSpace(rhs)
		var val any
		switch {
		case len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'':
			val = v[1 : len(v)-1]
		case v == "true" || v == "false":
			val = v == "true"
		default:
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return nil, fmt.Errorf("position %d: %q is not a value", pos+len(lhs)+2, v)
			}
			val = f
		}
		c = append(c, eqCondition{path: strings.Split(path, "."), val: val})
		pos += len(part) + 5
	}
	return c, nil
}

func splitFold(s, sep string) []string {
	var out []string
	for {
		i := strings.Index(strings.ToLower(s), sep)
		if i < 0 {
			return append(out, s)
		}
		out = append(out, s[:i])
		s = s[i+len(sep):]
	}
}

type andCondition []eqCondition

func (a andCondition) Match(doc map[string]any) bool {
	for _, c := range a {
		if !c.Match(doc) {
			return false
		}
	}
	return true
}

type eqCondition struct {
	path []string
	val  any
}

func (e eqCondition) Match(doc map[string]any) bool {
	var cur any = doc
	for _, k := range e.path {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		cur = m[k]
	}
	return cur == e.val
}
