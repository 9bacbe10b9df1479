package twin

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits enforced on every write. Sizes are bytes of compact JSON (see the
// package documentation); string and key lengths are bytes of UTF-8.
const (
	MaxDepth        = 10
	MaxDesiredSize  = 32 * 1024
	MaxReportedSize = 32 * 1024
	MaxTagsSize     = 8 * 1024
	MaxStringSize   = 4 * 1024
	MaxKeySize      = 1024
)

// node is one value of a section's content. Nodes are never changed once
// built: a write builds new nodes along the paths it changes and shares
// everything else with the old tree. So a failed write leaves the old tree as
// it was, and Clone copies no nodes.
type node struct {
	members []member // object members, sorted by key; used when raw is nil
	raw     []byte   // canonical compact JSON of a leaf; nil for an object
	updated string   // $lastUpdated
	version int64    // $lastUpdatedVersion (desired only)
	size    int      // length of the compact JSON of the value
}

type member struct {
	key  string
	klen int // length of the quoted key
	node *node
}

func (n *node) isObject() bool { return n.raw == nil }

func (n *node) lookup(key string) *node {
	i, ok := slices.BinarySearchFunc(n.members, key, func(m member, k string) int {
		return strings.Compare(m.key, k)
	})
	if !ok {
		return nil
	}
	return n.members[i].node
}

func newObject(members []member, updated string, version int64) *node {
	size := 2
	for i, m := range members {
		if i > 0 {
			size++
		}
		size += m.klen + 1 + m.node.size
	}
	return &node{members: members, updated: updated, version: version, size: size}
}

// checkKey returns why key is not a valid twin key, or "".
func checkKey(key string) string {
	switch {
	case key == "":
		return "empty key"
	case len(key) > MaxKeySize:
		return fmt.Sprintf("key length %d bytes exceeds %d", len(key), MaxKeySize)
	case key[0] == '$':
		return "key must not start with '$' ($metadata, $version and other $ names are read-only)"
	}
	for _, r := range key {
		switch {
		case r == '.':
			return "key must not contain '.'"
		case r == '$':
			return "key must not contain '$'"
		case r == ' ':
			return "key must not contain a space"
		case unicode.IsControl(r):
			return fmt.Sprintf("key must not contain control character %U", r)
		}
	}
	return ""
}

func depthError(p *path, depth int) *Error {
	return p.errorf(fmt.Sprintf("depth %d exceeds %d (at most %d nested objects or arrays below the section)", depth, MaxDepth, MaxDepth))
}

// MaxSafeInteger is the largest integer magnitude a twin holds, as IoT Hub
// (2^52−1): larger integers are refused.
const MaxSafeInteger int64 = 1<<52 - 1

// checkNumber returns why the JSON number s is not a valid twin value, or "":
// integers must be within ±MaxSafeInteger and other numbers finite 64-bit
// floats, as IoT Hub requires.
func checkNumber(s string) string {
	if strings.ContainsAny(s, ".eE") {
		if f, err := strconv.ParseFloat(s, 64); err != nil && (math.IsInf(f, 0) || math.IsNaN(f)) {
			return fmt.Sprintf("number %s is not finite (beyond ±%g): write a smaller number, or a string", s, math.MaxFloat64)
		}
		return ""
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > MaxSafeInteger || n < -MaxSafeInteger {
		return fmt.Sprintf("integer %s is out of range (at most ±%d, as IoT Hub): write it as a string", s, MaxSafeInteger)
	}
	return ""
}

// check says which limits appendLeaf enforces.
type check uint8

const (
	noCheck    check = iota // any decoded JSON value
	loadCheck               // keys, strings and depth: what a stored twin obeys
	writeCheck              // those and numbers: what a write must obey
)

// appendLeaf appends the canonical JSON of a decoded value v found at path p,
// depth d (a member of a section root has depth 1; array elements are one
// level deeper than their array). With checks it enforces the key, string
// and depth limits (and with writeCheck the number range); objects are allowed
// only inside arrays then, and nulls too. An object or array may be at depth
// MaxDepth at most, a value inside one at MaxDepth+1: IoT Hub counts nested
// objects, so tags.one.two…ten.property is valid. With noCheck it encodes any
// decoded JSON value.
func appendLeaf(b []byte, v any, p *path, d int, c check) ([]byte, error) {
	if c != noCheck {
		limit := MaxDepth + 1
		switch v.(type) {
		case []any, map[string]any:
			limit = MaxDepth
		}
		if d > limit {
			return nil, depthError(p, d)
		}
	}
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case json.Number:
		if c == writeCheck {
			if reason := checkNumber(string(v)); reason != "" {
				return nil, p.errorf(reason)
			}
		}
		return append(b, v...), nil
	case string:
		if c != noCheck && len(v) > MaxStringSize {
			return nil, p.errorf(fmt.Sprintf("string length %d bytes exceeds %d", len(v), MaxStringSize))
		}
		return appendString(b, v), nil
	case []any:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			b, err = appendLeaf(b, e, &path{parent: p, index: i, isIndex: true}, d+1, c)
			if err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = append(b, '{')
		for i, k := range keys {
			cp := &path{parent: p, key: k}
			if c != noCheck {
				if reason := checkKey(k); reason != "" {
					return nil, cp.errorf(reason)
				}
			}
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			var err error
			b, err = appendLeaf(b, v[k], cp, d+1, c)
			if err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	default:
		return nil, p.errorf(fmt.Sprintf("unsupported value of type %T", v))
	}
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as encoding/json does
// without HTML escaping.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// quotedLen is len(appendString(nil, s)) without the allocation.
func quotedLen(s string) int {
	n := 2
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c >= 0x20 && c != '"' && c != '\\':
				n++
			case c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t':
				n += 2
			default:
				n += 6
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1, r == '\u2028', r == '\u2029':
			n += 6
		default:
			n += size
		}
		i += size
	}
	return n
}
