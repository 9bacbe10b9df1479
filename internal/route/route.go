// Package route parses and evaluates IoT Edge's routes:
//
//	FROM <source> [WHERE <condition>] INTO <sink>
//
// Sources: /messages/* (every message), /messages/modules/{m}/* (every
// message of module m), /messages/modules/{m}/outputs/* (every message m
// sends on an output), /messages/modules/{m}/outputs/{o} (output o of m).
// Sinks: $upstream (the hub) and BrokeredEndpoint("/modules/{m}/inputs/{i}").
// Conditions are the subset of IoT Hub's routing query language described in
// condition.go. The package imports nothing of outpost.
package route

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"unicode"
)

// DefaultPriority is a route's priority when none is given (0 is highest, 9 lowest).
const DefaultPriority = 0

// SourceKind says which messages a route takes.
type SourceKind int

// Source kinds.
const (
	AllMessages     SourceKind = iota // /messages/*
	ModuleMessages                    // /messages/modules/{m}/*
	ModuleAnyOutput                   // /messages/modules/{m}/outputs/*
	ModuleOutput                      // /messages/modules/{m}/outputs/{o}
)

// Source is a route's FROM.
type Source struct {
	Kind   SourceKind
	Module string
	Output string
}

// Sink is a route's INTO: the hub (Upstream) or a module's input.
type Sink struct {
	Upstream bool
	Module   string
	Input    string
}

func (s Sink) String() string {
	if s.Upstream {
		return "$upstream"
	}
	return fmt.Sprintf("BrokeredEndpoint(\"/modules/%s/inputs/%s\")", s.Module, s.Input)
}

// Route is one parsed route.
type Route struct {
	Name      string
	Text      string
	Source    Source
	Condition *Condition // nil: every message of the source
	Sink      Sink
	Priority  int   // 0 (highest) … 9
	TTLSecs   int64 // 0: the store-and-forward default
}

// Message is what a route looks at: where it came from and its properties.
type Message struct {
	Module     string            // the sending module ("" for a leaf device)
	Output     string            // $.on, "" when sent without an output
	Properties map[string]string // application properties
	System     map[string]string // system properties by IoT Hub's query names: $contentType, $messageId, …
}

// Matches reports whether the route takes m.
func (r *Route) Matches(m *Message) bool {
	switch r.Source.Kind {
	case ModuleMessages:
		if m.Module != r.Source.Module {
			return false
		}
	case ModuleAnyOutput:
		if m.Module != r.Source.Module || m.Output == "" {
			return false
		}
	case ModuleOutput:
		if m.Module != r.Source.Module || m.Output != r.Source.Output {
			return false
		}
	}
	return r.Condition == nil || r.Condition.Eval(m)
}

// Error is a route that does not parse: its name, the column (1-based, in
// the route's text) and what was wrong.
type Error struct {
	Name   string
	Column int
	Msg    string
}

func (e *Error) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("route, column %d: %s", e.Column, e.Msg)
	}
	return fmt.Sprintf("route %q, column %d: %s", e.Name, e.Column, e.Msg)
}

// Parse parses the text of one route named name.
func Parse(name, text string) (*Route, error) {
	p := &parser{name: name, src: text}
	r := &Route{Name: name, Text: text, Priority: DefaultPriority}
	p.space()
	if !p.keyword("FROM") {
		return nil, p.errf(p.pos, "a route starts with FROM, as in FROM /messages/* INTO $upstream")
	}
	p.space()
	srcPos := p.pos
	path := p.word()
	src, err := parseSource(path)
	if err != nil {
		return nil, p.errf(srcPos, "%v", err)
	}
	r.Source = src
	p.space()
	if p.keyword("WHERE") {
		p.space()
		condPos := p.pos
		end := indexKeyword(text, p.pos, "INTO")
		if end < 0 {
			if _, err := lex(text[condPos:], condPos); err != nil {
				e := err.(*Error)
				e.Name = name
				return nil, e
			}
			return nil, p.errf(len(text), "INTO missing: end the route with INTO $upstream or INTO BrokeredEndpoint(\"/modules/{module}/inputs/{input}\")")
		}
		c, err := parseCondition(text[condPos:end], condPos)
		if err != nil {
			e := err.(*Error)
			e.Name = name
			return nil, e
		}
		r.Condition = c
		p.pos = end
	}
	p.space()
	if !p.keyword("INTO") {
		return nil, p.errf(p.pos, "INTO expected: end the route with INTO $upstream or INTO BrokeredEndpoint(\"/modules/{module}/inputs/{input}\")")
	}
	p.space()
	sinkPos := p.pos
	sink, n, err := parseSink(text[p.pos:])
	if err != nil {
		return nil, p.errf(sinkPos, "%v", err)
	}
	r.Sink = sink
	p.pos += n
	p.space()
	if p.pos < len(text) {
		return nil, p.errf(p.pos, "unexpected %q after the sink", text[p.pos:])
	}
	return r, nil
}

func parseSource(path string) (Source, error) {
	const hint = "a source is /messages/*, /messages/modules/{module}/*, /messages/modules/{module}/outputs/* or /messages/modules/{module}/outputs/{output}"
	if path == "/messages/*" || path == "/*" {
		return Source{Kind: AllMessages}, nil
	}
	rest, ok := strings.CutPrefix(path, "/messages/modules/")
	if !ok {
		if path == "" {
			return Source{}, fmt.Errorf("no source after FROM: %s", hint)
		}
		return Source{}, fmt.Errorf("source %q is not supported: %s", path, hint)
	}
	parts := strings.Split(rest, "/")
	switch {
	case len(parts) == 2 && parts[1] == "*" && validName(parts[0]):
		return Source{Kind: ModuleMessages, Module: parts[0]}, nil
	case len(parts) == 3 && parts[1] == "outputs" && parts[2] == "*" && validName(parts[0]):
		return Source{Kind: ModuleAnyOutput, Module: parts[0]}, nil
	case len(parts) == 3 && parts[1] == "outputs" && validName(parts[0]) && validName(parts[2]):
		return Source{Kind: ModuleOutput, Module: parts[0], Output: parts[2]}, nil
	}
	return Source{}, fmt.Errorf("source %q is not supported: %s", path, hint)
}

func validName(s string) bool {
	return s != "" && s != "*" && !strings.ContainsAny(s, "/+#\"() \t")
}

// parseSink reads $upstream or BrokeredEndpoint("/modules/{m}/inputs/{i}")
// at the start of s and returns how many bytes it took.
func parseSink(s string) (Sink, int, error) {
	const hint = "a sink is $upstream or BrokeredEndpoint(\"/modules/{module}/inputs/{input}\")"
	if strings.HasPrefix(s, "$upstream") {
		return Sink{Upstream: true}, len("$upstream"), nil
	}
	const be = "brokeredendpoint"
	if len(s) < len(be) || !strings.EqualFold(s[:len(be)], be) {
		if s == "" {
			return Sink{}, 0, fmt.Errorf("no sink after INTO: %s", hint)
		}
		return Sink{}, 0, fmt.Errorf("sink %q is not supported: %s", firstWord(s), hint)
	}
	i := len(be)
	for i < len(s) && s[i] == ' ' {
		i++
	}
	if i >= len(s) || s[i] != '(' {
		return Sink{}, 0, fmt.Errorf("BrokeredEndpoint takes one quoted path: %s", hint)
	}
	i++
	for i < len(s) && s[i] == ' ' {
		i++
	}
	if i >= len(s) || (s[i] != '"' && s[i] != '\'') {
		return Sink{}, 0, fmt.Errorf("BrokeredEndpoint's path must be quoted: %s", hint)
	}
	q := s[i]
	end := strings.IndexByte(s[i+1:], q)
	if end < 0 {
		return Sink{}, 0, fmt.Errorf("BrokeredEndpoint's path has no closing quote: %s", hint)
	}
	path := s[i+1 : i+1+end]
	i += end + 2
	for i < len(s) && s[i] == ' ' {
		i++
	}
	if i >= len(s) || s[i] != ')' {
		return Sink{}, 0, fmt.Errorf("BrokeredEndpoint has no closing ): %s", hint)
	}
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if !strings.HasPrefix(path, "/") || len(parts) != 4 || parts[0] != "modules" || parts[2] != "inputs" || !validName(parts[1]) || !validName(parts[3]) {
		return Sink{}, 0, fmt.Errorf("endpoint %q is not a module input: %s", path, hint)
	}
	return Sink{Module: parts[1], Input: parts[3]}, i + 1, nil
}

func firstWord(s string) string {
	if i := strings.IndexFunc(s, unicode.IsSpace); i >= 0 {
		return s[:i]
	}
	return s
}

// indexKeyword finds the keyword kw (case-insensitive, as a whole word,
// outside quotes) in s from from; -1 when there is none.
func indexKeyword(s string, from int, kw string) int {
	var quote byte
	for i := from; i < len(s); i++ {
		c := s[i]
		if quote != 0 {
			if c == quote {
				quote = 0
			}
			continue
		}
		if c == '\'' || c == '"' {
			quote = c
			continue
		}
		if i+len(kw) <= len(s) && strings.EqualFold(s[i:i+len(kw)], kw) &&
			(i == 0 || !isIdent(s[i-1])) && (i+len(kw) == len(s) || !isIdent(s[i+len(kw)])) {
			return i
		}
	}
	return -1
}

func isIdent(c byte) bool {
	return c == '_' || c == '$' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

type parser struct {
	name string
	src  string
	pos  int
}

func (p *parser) errf(pos int, format string, args ...any) *Error {
	return &Error{Name: p.name, Column: pos + 1, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) space() {
	for p.pos < len(p.src) && unicode.IsSpace(rune(p.src[p.pos])) {
		p.pos++
	}
}

func (p *parser) keyword(kw string) bool {
	end := p.pos + len(kw)
	if end > len(p.src) || !strings.EqualFold(p.src[p.pos:end], kw) || (end < len(p.src) && isIdent(p.src[end])) {
		return false
	}
	p.pos = end
	return true
}

func (p *parser) word() string {
	start := p.pos
	for p.pos < len(p.src) && !unicode.IsSpace(rune(p.src[p.pos])) {
		p.pos++
	}
	return p.src[start:p.pos]
}

// Spec is a route as a manifest gives it: IoT Edge's string form, or schema
// 1.1's {route, priority, timeToLiveSecs}.
type Spec struct {
	Route          string `json:"route"`
	Priority       *int   `json:"priority,omitempty"`
	TimeToLiveSecs *int64 `json:"timeToLiveSecs,omitempty"`
}

// UnmarshalJSON reads either form.
func (s *Spec) UnmarshalJSON(b []byte) error {
	var str string
	if json.Unmarshal(b, &str) == nil {
		*s = Spec{Route: str}
		return nil
	}
	type plain Spec
	var p plain
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("a route is a string (FROM … INTO …) or {route, priority, timeToLiveSecs}: %w", err)
	}
	*s = Spec(p)
	return nil
}

// ParseAll parses a manifest's routes (name → Spec), sorted by priority
// then name. The first error found (by name) is returned.
func ParseAll(specs map[string]Spec) ([]*Route, error) {
	names := make([]string, 0, len(specs))
	for n := range specs {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]*Route, 0, len(names))
	for _, n := range names {
		sp := specs[n]
		r, err := Parse(n, sp.Route)
		if err != nil {
			return nil, err
		}
		if sp.Priority != nil {
			if *sp.Priority < 0 || *sp.Priority > 9 {
				return nil, &Error{Name: n, Column: 1, Msg: fmt.Sprintf("priority %d is out of range: 0 (highest) to 9", *sp.Priority)}
			}
			r.Priority = *sp.Priority
		}
		if sp.TimeToLiveSecs != nil {
			if *sp.TimeToLiveSecs < 0 {
				return nil, &Error{Name: n, Column: 1, Msg: fmt.Sprintf("timeToLiveSecs %d is negative", *sp.TimeToLiveSecs)}
			}
			r.TTLSecs = *sp.TimeToLiveSecs
		}
		out = append(out, r)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Priority < out[j].Priority })
	return out, nil
}

// ParseJSON parses the routes member of $edgeHub's desired properties.
func ParseJSON(routes json.RawMessage) ([]*Route, error) {
	if len(routes) == 0 || string(routes) == "null" {
		return nil, nil
	}
	var specs map[string]Spec
	if err := json.Unmarshal(routes, &specs); err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	return ParseAll(specs)
}
