package deployment

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// A manifest is read in two steps: the YAML or JSON text becomes a tree of
// values that remembers where each value was written, and the tree is then
// walked by the decoders of native.go and iotedge.go. Both syntaxes give the
// same tree, so both formats can be written in either.

type kind uint8

const (
	kindNull kind = iota
	kindBool
	kindNumber
	kindString
	kindObject
	kindArray
)

func (k kind) String() string {
	return [...]string{"null", "a boolean", "a number", "a string", "an object", "an array"}[k]
}

// value is one node of a decoded document.
type value struct {
	kind kind
	line int // 1-based; 0 when unknown
	// str is the string of a string, the JSON literal of a number, and
	// "true" or "false" for a boolean.
	str string
	// text is a scalar as it was written in the source (YAML may spell
	// numbers and booleans in ways JSON does not).
	text   string
	fields []field  // object members, in source order
	items  []*value // array elements
}

type field struct {
	key  string
	line int
	val  *value
}

// get returns the member named key, or nil.
func (v *value) get(key string) *value {
	if v == nil || v.kind != kindObject {
		return nil
	}
	for _, f := range v.fields {
		if f.key == key {
			return f.val
		}
	}
	return nil
}

// isScalar reports whether v is a string, number or boolean.
func (v *value) isScalar() bool {
	return v.kind == kindString || v.kind == kindNumber || v.kind == kindBool
}

// appendJSON appends v as compact JSON, object members in source order,
// strings escaped as encoding/json does without HTML escaping.
func appendJSON(b []byte, v *value) []byte {
	switch v.kind {
	case kindNull:
		return append(b, "null"...)
	case kindBool, kindNumber:
		return append(b, v.str...)
	case kindString:
		return appendString(b, v.str)
	case kindArray:
		b = append(b, '[')
		for i, it := range v.items {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSON(b, it)
		}
		return append(b, ']')
	default:
		b = append(b, '{')
		for i, f := range v.fields {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, f.key)
			b = append(b, ':')
			b = appendJSON(b, f.val)
		}
		return append(b, '}')
	}
}

func appendString(b []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}

// syntaxError is a problem with the text of a document itself.
type syntaxError struct {
	line, column int
	msg          string
}

// maxNodes bounds the values one document may expand to, YAML aliases
// included, so that an alias bomb cannot exhaust memory.
const maxNodes = 1 << 20

// maxNesting bounds how deeply values may nest.
const maxNesting = 1000

var errTooLarge = fmt.Errorf("the document has more than %d values (after expanding YAML aliases)", maxNodes)

var errTooDeep = fmt.Errorf("the document nests deeper than %d levels", maxNesting)

// looksLikeJSON reports whether data should be read as JSON: its first
// character other than white space opens an object or an array.
func looksLikeJSON(data []byte) bool {
	data = bytes.TrimLeft(data, " \t\r\n")
	return len(data) > 0 && (data[0] == '{' || data[0] == '[')
}

var utf8BOM = []byte("\xef\xbb\xbf")

// decodeDocument reads YAML or JSON (chosen by content) into a tree.
func decodeDocument(data []byte) (*value, *syntaxError) {
	data = bytes.TrimPrefix(data, utf8BOM)
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &syntaxError{msg: "the file is empty; a manifest needs at least schemaVersion and modules"}
	}
	if looksLikeJSON(data) {
		v, err := decodeJSON(data)
		if err != nil {
			// YAML's flow style looks like JSON too: {schemaVersion: "1.0"}.
			if yv, yerr := decodeYAML(data); yerr == nil {
				return yv, nil
			}
		}
		return v, err
	}
	return decodeYAML(data)
}

// position turns a byte offset of data into a 1-based line and column.
func position(data []byte, offset int64) (line, column int) {
	if offset < 0 {
		offset = 0
	}
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	before := data[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	column = utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
	return line, column
}

// decodeJSON reads one JSON value. Object members keep their order, numbers
// keep their literal text and duplicate keys are an error.
func decodeJSON(data []byte) (*value, *syntaxError) {
	// A first pass with encoding/json finds syntax errors and their
	// offsets; the second builds the tree from tokens.
	dec := json.NewDecoder(bytes.NewReader(data))
	var discard any
	if err := dec.Decode(&discard); err != nil {
		return nil, jsonSyntaxError(data, err, dec.InputOffset())
	}
	if _, err := dec.Token(); err != io.EOF {
		line, col := position(data, dec.InputOffset())
		return nil, &syntaxError{line: line, column: col, msg: "unexpected data after the end of the JSON document"}
	}
	b := &jsonBuilder{data: data, dec: json.NewDecoder(bytes.NewReader(data))}
	b.dec.UseNumber()
	v, err := b.value(0)
	if err != nil {
		return nil, err
	}
	return v, nil
}

func jsonSyntaxError(data []byte, err error, offset int64) *syntaxError {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		line, col := position(data, se.Offset-1)
		return &syntaxError{line: line, column: col, msg: "invalid JSON: " + se.Error()}
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		line, col := position(data, int64(len(data)))
		return &syntaxError{line: line, column: col, msg: "invalid JSON: unexpected end of input; the file is truncated or a bracket is not closed"}
	}
	line, col := position(data, offset)
	return &syntaxError{line: line, column: col, msg: "invalid JSON: " + err.Error()}
}

type jsonBuilder struct {
	data  []byte
	dec   *json.Decoder
	nodes int
	// the line at offset, counted as the decoder moves on
	offset int64
	lineNo int
}

func (b *jsonBuilder) line() int {
	// InputOffset is the end of the last token, which is on the line the
	// token starts on: JSON tokens hold no line breaks.
	end := min(b.dec.InputOffset(), int64(len(b.data)))
	if end > b.offset {
		b.lineNo += bytes.Count(b.data[b.offset:end], []byte("\n"))
		b.offset = end
	}
	return b.lineNo + 1
}

func (b *jsonBuilder) fail(msg string) *syntaxError {
	line, col := position(b.data, b.dec.InputOffset())
	return &syntaxError{line: line, column: col, msg: msg}
}

func (b *jsonBuilder) value(depth int) (*value, *syntaxError) {
	if b.nodes++; b.nodes > maxNodes {
		return nil, b.fail(errTooLarge.Error())
	}
	if depth > maxNesting {
		return nil, b.fail(errTooDeep.Error())
	}
	tok, err := b.dec.Token()
	if err != nil {
		return nil, jsonSyntaxError(b.data, err, b.dec.InputOffset())
	}
	v := &value{line: b.line()}
	switch t := tok.(type) {
	case nil:
		v.kind = kindNull
	case bool:
		v.kind, v.str = kindBool, strconv.FormatBool(t)
	case json.Number:
		v.kind, v.str = kindNumber, string(t)
	case string:
		v.kind, v.str = kindString, t
	case json.Delim:
		if t == '[' {
			v.kind = kindArray
			for b.dec.More() {
				it, err := b.value(depth + 1)
				if err != nil {
					return nil, err
				}
				v.items = append(v.items, it)
			}
		} else {
			v.kind = kindObject
			seen := map[string]bool{}
			for b.dec.More() {
				tok, err := b.dec.Token()
				if err != nil {
					return nil, jsonSyntaxError(b.data, err, b.dec.InputOffset())
				}
				key, _ := tok.(string)
				line := b.line()
				if seen[key] {
					return nil, &syntaxError{line: line, msg: fmt.Sprintf("duplicate key %q", key)}
				}
				seen[key] = true
				val, serr := b.value(depth + 1)
				if serr != nil {
					return nil, serr
				}
				v.fields = append(v.fields, field{key: key, line: line, val: val})
			}
		}
		if _, err := b.dec.Token(); err != nil { // the closing delimiter
			return nil, jsonSyntaxError(b.data, err, b.dec.InputOffset())
		}
	}
	v.text = v.str
	return v, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// decodeYAML reads one YAML document.
func decodeYAML(data []byte) (*value, *syntaxError) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, &syntaxError{msg: "the file holds no YAML document"}
		}
		return nil, yamlSyntaxError(err)
	}
	var next yaml.Node
	if err := dec.Decode(&next); err != io.EOF {
		if err != nil {
			return nil, yamlSyntaxError(err)
		}
		return nil, &syntaxError{line: next.Line, msg: "more than one YAML document; put one manifest in a file"}
	}
	b := &yamlBuilder{}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, &syntaxError{msg: "the file holds no YAML document"}
		}
		root = root.Content[0]
	}
	v, err := b.value(root, 0)
	if err != nil {
		return nil, err
	}
	return v, nil
}

func yamlSyntaxError(err error) *syntaxError {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &syntaxError{line: line, msg: "invalid YAML: " + m[2]}
	}
	return &syntaxError{msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

type yamlBuilder struct {
	nodes int
}

func (b *yamlBuilder) fail(n *yaml.Node, format string, args ...any) *syntaxError {
	return &syntaxError{line: n.Line, msg: fmt.Sprintf(format, args...)}
}

var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

func (b *yamlBuilder) value(n *yaml.Node, depth int) (*value, *syntaxError) {
	if b.nodes++; b.nodes > maxNodes {
		return nil, b.fail(n, "%v", errTooLarge)
	}
	if depth > maxNesting {
		return nil, b.fail(n, "%v", errTooDeep)
	}
	v := &value{line: n.Line}
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil, b.fail(n, "alias *%s names no anchor", n.Value)
		}
		av, err := b.value(n.Alias, depth+1)
		if err != nil {
			return nil, err
		}
		c := *av
		c.line = n.Line
		return &c, nil
	case yaml.DocumentNode:
		return nil, b.fail(n, "nested YAML document")
	case yaml.SequenceNode:
		v.kind = kindArray
		v.items = []*value{}
		for _, c := range n.Content {
			it, err := b.value(c, depth+1)
			if err != nil {
				return nil, err
			}
			v.items = append(v.items, it)
		}
		return v, nil
	case yaml.MappingNode:
		v.kind = kindObject
		if err := b.mapping(v, n, depth, false, map[string]bool{}); err != nil {
			return nil, err
		}
		return v, nil
	}
	return b.scalar(n)
}

// mapping adds the members of the mapping n to v. Merge keys ("<<") are
// expanded; members written in the mapping itself win over merged ones.
func (b *yamlBuilder) mapping(v *value, n *yaml.Node, depth int, merged bool, seen map[string]bool) *syntaxError {
	if len(n.Content)%2 != 0 {
		return b.fail(n, "malformed mapping")
	}
	var merges []*yaml.Node
	for i := 0; i < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, val)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			return b.fail(k, "a mapping key must be a plain string, not a %s", yamlKind(k))
		}
		if !utf8.ValidString(k.Value) {
			return b.fail(k, "key is not valid UTF-8")
		}
		if seen[k.Value] {
			if merged {
				continue // an earlier (explicit or merged) member wins
			}
			return b.fail(k, "duplicate key %q", k.Value)
		}
		seen[k.Value] = true
		fv, err := b.value(val, depth+1)
		if err != nil {
			return err
		}
		v.fields = append(v.fields, field{key: k.Value, line: k.Line, val: fv})
	}
	for _, m := range merges {
		for m.Kind == yaml.AliasNode && m.Alias != nil {
			m = m.Alias
		}
		var srcs []*yaml.Node
		switch m.Kind {
		case yaml.MappingNode:
			srcs = []*yaml.Node{m}
		case yaml.SequenceNode:
			srcs = m.Content
		default:
			return b.fail(m, "a merge key (<<) needs a mapping or a list of mappings")
		}
		for _, s := range srcs {
			for s.Kind == yaml.AliasNode && s.Alias != nil {
				s = s.Alias
			}
			if s.Kind != yaml.MappingNode {
				return b.fail(s, "a merge key (<<) needs a mapping or a list of mappings")
			}
			if b.nodes += len(s.Content); b.nodes > maxNodes {
				return b.fail(s, "%v", errTooLarge)
			}
			if depth > maxNesting {
				return b.fail(s, "%v", errTooDeep)
			}
			if err := b.mapping(v, s, depth+1, true, seen); err != nil {
				return err
			}
		}
	}
	return nil
}

func (v *value) index(key string) int {
	for i, f := range v.fields {
		if f.key == key {
			return i
		}
	}
	return -1
}

func yamlKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	}
	return "value"
}

func (b *yamlBuilder) scalar(n *yaml.Node) (*value, *syntaxError) {
	v := &value{line: n.Line, text: n.Value}
	if !utf8.ValidString(n.Value) {
		return nil, b.fail(n, "value is not valid UTF-8")
	}
	switch tag := n.ShortTag(); tag {
	case "!!null":
		v.kind = kindNull
	case "!!bool":
		var x bool
		if err := n.Decode(&x); err != nil {
			return nil, b.fail(n, "%q is not a boolean", n.Value)
		}
		v.kind, v.str = kindBool, strconv.FormatBool(x)
	case "!!int", "!!float":
		s, ok := yamlNumber(n)
		if !ok {
			return nil, b.fail(n, "%s cannot be written in JSON; quote it if it is a string", n.Value)
		}
		v.kind, v.str = kindNumber, s
	case "!!str", "!!timestamp", "!!binary":
		v.kind, v.str = kindString, n.Value
	default:
		return nil, b.fail(n, "YAML tag %s is not supported", tag)
	}
	return v, nil
}

// yamlNumber returns a YAML number as a JSON number literal, keeping the
// literal as written when JSON allows it.
func yamlNumber(n *yaml.Node) (string, bool) {
	if jsonNumber.MatchString(n.Value) {
		return n.Value, true
	}
	var x any
	if err := n.Decode(&x); err != nil {
		return "", false
	}
	switch x := x.(type) {
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return "", false
		}
		s := strconv.FormatFloat(x, 'g', -1, 64)
		return s, jsonNumber.MatchString(s)
	}
	return "", false
}

// parseJSONText reads JSON held in a string (an IoT Edge createOptions). Its
// errors give the offset within the string, since its lines are not lines of
// the file.
func parseJSONText(s string) (*value, error) {
	v, serr := decodeJSON([]byte(s))
	if serr != nil {
		msg := strings.TrimPrefix(serr.msg, "invalid JSON: ")
		msg = strings.Replace(msg, "the file is truncated or a bracket is not closed", "a bracket or a quote is not closed", 1)
		if serr.line > 0 {
			msg = fmt.Sprintf("%s (line %d, column %d of the string)", msg, serr.line, serr.column)
		}
		return nil, errors.New(msg)
	}
	return v, nil
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
