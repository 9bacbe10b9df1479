package route

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Conditions (WHERE) are the part of IoT Hub's routing query language that
// looks at a message's properties:
//
//   - application properties by name (temperatureAlert, or [name with
//     spaces]); system properties $contentType, $contentEncoding,
//     $messageId, $correlationId, $userId, $connectionDeviceId,
//     $connectionModuleId, $outputName;
//   - literals: 'strings' ("double quotes" too), numbers, true, false, null;
//   - comparisons = != <> < <= > >=, arithmetic + - * / %, AND OR NOT, ( );
//   - functions IS_DEFINED IS_NULL IS_STRING IS_NUMBER IS_BOOL, LENGTH LOWER
//     UPPER TRIM LTRIM RTRIM CONCAT SUBSTRING INDEX_OF STARTS_WITH ENDS_WITH
//     CONTAINS, ABS.
//
// Property values are strings; compared with a number literal, a value
// that reads as a number compares as one. A comparison of values of
// different types, or with a property the message lacks, is undefined, and
// an undefined condition does not match, as at IoT Hub. What is not listed
// ($body, $twin, other functions) is a parse error naming its column.

// Condition is a parsed WHERE condition.
type Condition struct {
	root node
	text string
}

// Eval reports whether m satisfies the condition (undefined is false).
func (c *Condition) Eval(m *Message) bool {
	v := c.root.eval(m)
	return v.kind == kBool && v.b
}

func (c *Condition) String() string { return c.text }

// systemProperties maps the query's names to the keys of Message.System.
var systemProperties = map[string]bool{
	"$contentType": true, "$contentEncoding": true, "$messageId": true, "$correlationId": true,
	"$userId": true, "$connectionDeviceId": true, "$connectionModuleId": true, "$outputName": true,
}

type kind int

const (
	kUndef kind = iota
	kNull
	kBool
	kNum
	kStr
)

type val struct {
	kind kind
	b    bool
	n    float64
	s    string
}

var undef = val{}

type node interface{ eval(*Message) val }

type (
	litNode  struct{ v val }
	propNode struct {
		name   string
		system bool
	}
	notNode struct{ x node }
	negNode struct{ x node }
	binNode struct {
		op   string
		l, r node
	}
	callNode struct {
		fn   string
		args []node
	}
)

func (n litNode) eval(*Message) val { return n.v }

func (n propNode) eval(m *Message) val {
	src := m.Properties
	if n.system {
		src = m.System
	}
	s, ok := src[n.name]
	if !ok {
		return undef
	}
	return val{kind: kStr, s: s}
}

func (n notNode) eval(m *Message) val {
	v := n.x.eval(m)
	if v.kind != kBool {
		return undef
	}
	return val{kind: kBool, b: !v.b}
}

func (n negNode) eval(m *Message) val {
	v, ok := number(n.x.eval(m))
	if !ok {
		return undef
	}
	return val{kind: kNum, n: -v}
}

func number(v val) (float64, bool) {
	switch v.kind {
	case kNum:
		return v.n, true
	case kStr:
		f, err := strconv.ParseFloat(strings.TrimSpace(v.s), 64)
		return f, err == nil && !math.IsInf(f, 0) && !math.IsNaN(f)
	}
	return 0, false
}

func (n binNode) eval(m *Message) val {
	switch n.op {
	case "AND":
		l := n.l.eval(m)
		if l.kind == kBool && !l.b {
			return val{kind: kBool}
		}
		r := n.r.eval(m)
		if r.kind == kBool && !r.b {
			return val{kind: kBool}
		}
		if l.kind == kBool && r.kind == kBool {
			return val{kind: kBool, b: true}
		}
		return undef
	case "OR":
		l := n.l.eval(m)
		if l.kind == kBool && l.b {
			return l
		}
		r := n.r.eval(m)
		if r.kind == kBool && r.b {
			return r
		}
		if l.kind == kBool && r.kind == kBool {
			return val{kind: kBool}
		}
		return undef
	}
	l, r := n.l.eval(m), n.r.eval(m)
	switch n.op {
	case "+", "-", "*", "/", "%":
		a, ok1 := number(l)
		b, ok2 := number(r)
		if !ok1 || !ok2 {
			return undef
		}
		var x float64
		switch n.op {
		case "+":
			x = a + b
		case "-":
			x = a - b
		case "*":
			x = a * b
		case "/":
			if b == 0 {
				return undef
			}
			x = a / b
		case "%":
			if b == 0 {
				return undef
			}
			x = math.Mod(a, b)
		}
		return val{kind: kNum, n: x}
	}
	c, ok := compare(l, r)
	if !ok {
		return undef
	}
	var res bool
	switch n.op {
	case "=":
		res = c == 0
	case "!=", "<>":
		res = c != 0
	case "<":
		res = c < 0
	case "<=":
		res = c <= 0
	case ">":
		res = c > 0
	case ">=":
		res = c >= 0
	}
	return val{kind: kBool, b: res}
}

// compare orders two values of one type; a string meeting a number
// compares as a number when it reads as one.
func compare(l, r val) (int, bool) {
	if l.kind == kUndef || r.kind == kUndef {
		return 0, false
	}
	if l.kind == kNum || r.kind == kNum {
		a, ok1 := number(l)
		b, ok2 := number(r)
		if !ok1 || !ok2 || (l.kind != kNum && l.kind != kStr) || (r.kind != kNum && r.kind != kStr) {
			return 0, false
		}
		switch {
		case a < b:
			return -1, true
		case a > b:
			return 1, true
		}
		return 0, true
	}
	if l.kind != r.kind {
		return 0, false
	}
	switch l.kind {
	case kStr:
		return strings.Compare(l.s, r.s), true
	case kBool:
		if l.b == r.b {
			return 0, true
		}
		if !l.b {
			return -1, true
		}
		return 1, true
	case kNull:
		return 0, true
	}
	return 0, false
}

var comparisons = map[string]bool{"=": true, "!=": true, "<>": true, "<": true, "<=": true, ">": true, ">=": true}

// functions: name → (min args, max args).
var functions = map[string][2]int{
	"IS_DEFINED": {1, 1}, "IS_NULL": {1, 1}, "IS_STRING": {1, 1}, "IS_NUMBER": {1, 1}, "IS_BOOL": {1, 1},
	"LENGTH": {1, 1}, "LOWER": {1, 1}, "UPPER": {1, 1}, "TRIM": {1, 1}, "LTRIM": {1, 1}, "RTRIM": {1, 1},
	"CONCAT": {2, 16}, "SUBSTRING": {2, 3}, "INDEX_OF": {2, 2}, "STARTS_WITH": {2, 2}, "ENDS_WITH": {2, 2},
	"CONTAINS": {2, 2}, "ABS": {1, 1},
}

func (n callNode) eval(m *Message) val {
	args := make([]val, len(n.args))
	for i, a := range n.args {
		args[i] = a.eval(m)
	}
	boolean := func(b bool) val { return val{kind: kBool, b: b} }
	switch n.fn {
	case "IS_DEFINED":
		return boolean(args[0].kind != kUndef)
	case "IS_NULL":
		return boolean(args[0].kind == kNull)
	case "IS_STRING":
		return boolean(args[0].kind == kStr)
	case "IS_NUMBER":
		return boolean(args[0].kind == kNum)
	case "IS_BOOL":
		return boolean(args[0].kind == kBool)
	case "ABS":
		x, ok := number(args[0])
		if !ok {
			return undef
		}
		return val{kind: kNum, n: math.Abs(x)}
	}
	for _, a := range args[:1] {
		if a.kind != kStr {
			return undef
		}
	}
	s := args[0].s
	str := func(i int) (string, bool) {
		if args[i].kind != kStr {
			return "", false
		}
		return args[i].s, true
	}
	switch n.fn {
	case "LENGTH":
		return val{kind: kNum, n: float64(utf8.RuneCountInString(s))}
	case "LOWER":
		return val{kind: kStr, s: strings.ToLower(s)}
	case "UPPER":
		return val{kind: kStr, s: strings.ToUpper(s)}
	case "TRIM":
		return val{kind: kStr, s: strings.TrimSpace(s)}
	case "LTRIM":
		return val{kind: kStr, s: strings.TrimLeft(s, " \t\r\n")}
	case "RTRIM":
		return val{kind: kStr, s: strings.TrimRight(s, " \t\r\n")}
	case "CONCAT":
		var b strings.Builder
		for i := range args {
			x, ok := str(i)
			if !ok {
				return undef
			}
			b.WriteString(x)
		}
		return val{kind: kStr, s: b.String()}
	case "SUBSTRING":
		rs := []rune(s)
		start, ok := number(args[1])
		if !ok || args[1].kind != kNum || start < 0 || start != math.Trunc(start) {
			return undef
		}
		end := float64(len(rs))
		if len(args) == 3 {
			l, ok := number(args[2])
			if !ok || args[2].kind != kNum || l < 0 {
				return undef
			}
			end = math.Min(end, start+math.Trunc(l))
		}
		if start > float64(len(rs)) {
			return val{kind: kStr}
		}
		return val{kind: kStr, s: string(rs[int(start):int(end)])}
	}
	sub, ok := str(1)
	if !ok {
		return undef
	}
	switch n.fn {
	case "INDEX_OF":
		i := strings.Index(s, sub)
		if i > 0 {
			i = utf8.RuneCountInString(s[:i])
		}
		return val{kind: kNum, n: float64(i)}
	case "STARTS_WITH":
		return boolean(strings.HasPrefix(s, sub))
	case "ENDS_WITH":
		return boolean(strings.HasSuffix(s, sub))
	case "CONTAINS":
		return boolean(strings.Contains(s, sub))
	}
	return undef
}

// Parsing: a lexer over the condition's text, then precedence climbing:
// OR < AND < NOT < comparison < + - < * / % < unary - < primary.

type token struct {
	kind string // "id", "sys", "str", "num", "op", "(", ")", ",", "eof"
	text string
	pos  int // offset in the route's text
}

type condParser struct {
	toks []token
	i    int
	src  string
}

func parseCondition(text string, offset int) (*Condition, error) {
	toks, err := lex(text, offset)
	if err != nil {
		return nil, err
	}
	p := &condParser{toks: toks, src: text}
	if p.peek().kind == "eof" {
		return nil, &Error{Column: offset + 1, Msg: "WHERE has no condition"}
	}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != "eof" {
		return nil, &Error{Column: t.pos + 1, Msg: fmt.Sprintf("unexpected %q: a condition joins comparisons with AND, OR and NOT", t.text)}
	}
	return &Condition{root: n, text: strings.TrimSpace(text)}, nil
}

func (p *condParser) peek() token { return p.toks[p.i] }
func (p *condParser) next() token { t := p.toks[p.i]; p.i++; return t }

func (p *condParser) isKeyword(kw string) bool {
	t := p.peek()
	return t.kind == "id" && strings.EqualFold(t.text, kw)
}

func (p *condParser) or() (node, error) {
	l, err := p.and()
	for err == nil && p.isKeyword("OR") {
		p.next()
		var r node
		if r, err = p.and(); err == nil {
			l = binNode{op: "OR", l: l, r: r}
		}
	}
	return l, err
}

func (p *condParser) and() (node, error) {
	l, err := p.not()
	for err == nil && p.isKeyword("AND") {
		p.next()
		var r node
		if r, err = p.not(); err == nil {
			l = binNode{op: "AND", l: l, r: r}
		}
	}
	return l, err
}

func (p *condParser) not() (node, error) {
	if p.isKeyword("NOT") {
		p.next()
		x, err := p.not()
		return notNode{x}, err
	}
	return p.comparison()
}

func (p *condParser) comparison() (node, error) {
	l, err := p.additive()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind == "op" && comparisons[t.text] {
		p.next()
		r, err := p.additive()
		if err != nil {
			return nil, err
		}
		return binNode{op: t.text, l: l, r: r}, nil
	}
	return l, nil
}

func (p *condParser) additive() (node, error) {
	l, err := p.multiplicative()
	for err == nil && p.peek().kind == "op" && (p.peek().text == "+" || p.peek().text == "-") {
		op := p.next().text
		var r node
		if r, err = p.multiplicative(); err == nil {
			l = binNode{op: op, l: l, r: r}
		}
	}
	return l, err
}

func (p *condParser) multiplicative() (node, error) {
	l, err := p.unary()
	for err == nil && p.peek().kind == "op" && strings.Contains("*/%", p.peek().text) {
		op := p.next().text
		var r node
		if r, err = p.unary(); err == nil {
			l = binNode{op: op, l: l, r: r}
		}
	}
	return l, err
}

func (p *condParser) unary() (node, error) {
	if t := p.peek(); t.kind == "op" && t.text == "-" {
		p.next()
		x, err := p.unary()
		return negNode{x}, err
	}
	return p.primary()
}

func (p *condParser) primary() (node, error) {
	t := p.next()
	switch t.kind {
	case "str":
		return litNode{val{kind: kStr, s: t.text}}, nil
	case "num":
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil || math.IsInf(f, 0) {
			return nil, &Error{Column: t.pos + 1, Msg: fmt.Sprintf("%q is not a number", t.text)}
		}
		return litNode{val{kind: kNum, n: f}}, nil
	case "sys":
		if strings.HasPrefix(t.text, "$body") || strings.HasPrefix(t.text, "$twin") {
			return nil, &Error{Column: t.pos + 1, Msg: fmt.Sprintf("%s: routing on the message body or the twin is not supported; route on application or system properties", t.text)}
		}
		if !systemProperties[t.text] {
			return nil, &Error{Column: t.pos + 1, Msg: fmt.Sprintf("unknown system property %s: use $contentType, $contentEncoding, $messageId, $correlationId, $userId, $connectionDeviceId, $connectionModuleId or $outputName", t.text)}
		}
		return propNode{name: t.text, system: true}, nil
	case "(":
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != ")" {
			return nil, &Error{Column: c.pos + 1, Msg: "missing )"}
		}
		return n, nil
	case "id", "qid":
		if t.kind == "id" {
			switch strings.ToUpper(t.text) {
			case "TRUE":
				return litNode{val{kind: kBool, b: true}}, nil
			case "FALSE":
				return litNode{val{kind: kBool}}, nil
			case "NULL":
				return litNode{val{kind: kNull}}, nil
			case "AND", "OR", "NOT":
				return nil, &Error{Column: t.pos + 1, Msg: fmt.Sprintf("%s needs an operand before it", t.text)}
			}
			if p.peek().kind == "(" {
				return p.call(t)
			}
			if strings.Contains(t.text, ".") {
				return nil, &Error{Column: t.pos + 1, Msg: fmt.Sprintf("%s: properties are flat strings; nested names are not supported", t.text)}
			}
		}
		return propNode{name: t.text}, nil
	case "eof":
		return nil, &Error{Column: t.pos + 1, Msg: "the condition ends too early: an operand is missing"}
	}
	return nil, &Error{Column: t.pos + 1, Msg: fmt.Sprintf("unexpected %q: an operand (property, literal or function) is expected", t.text)}
}

func (p *condParser) call(name token) (node, error) {
	fn := strings.ToUpper(name.text)
	arity, ok := functions[fn]
	if !ok {
		return nil, &Error{Column: name.pos + 1, Msg: fmt.Sprintf("function %s is not supported: use IS_DEFINED, IS_NULL, IS_STRING, IS_NUMBER, IS_BOOL, LENGTH, LOWER, UPPER, TRIM, LTRIM, RTRIM, CONCAT, SUBSTRING, INDEX_OF, STARTS_WITH, ENDS_WITH, CONTAINS or ABS", name.text)}
	}
	p.next() // (
	var args []node
	if p.peek().kind != ")" {
		for {
			a, err := p.or()
			if err != nil {
				return nil, err
			}
			args = append(args, a)
			if p.peek().kind != "," {
				break
			}
			p.next()
		}
	}
	if c := p.next(); c.kind != ")" {
		return nil, &Error{Column: c.pos + 1, Msg: fmt.Sprintf("missing ) after the arguments of %s", fn)}
	}
	if len(args) < arity[0] || len(args) > arity[1] {
		want := strconv.Itoa(arity[0])
		if arity[1] != arity[0] {
			want = fmt.Sprintf("%d to %d", arity[0], arity[1])
		}
		return nil, &Error{Column: name.pos + 1, Msg: fmt.Sprintf("%s takes %s arguments, not %d", fn, want, len(args))}
	}
	return callNode{fn: fn, args: args}, nil
}

func lex(s string, offset int) ([]token, error) {
	var toks []token
	i := 0
	for i < len(s) {
		c := s[i]
		pos := offset + i
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '\'' || c == '"':
			var b strings.Builder
			j := i + 1
			for {
				if j >= len(s) {
					return nil, &Error{Column: pos + 1, Msg: "a string has no closing quote"}
				}
				if s[j] == c {
					if j+1 < len(s) && s[j+1] == c { // '' is a quote
						b.WriteByte(c)
						j += 2
						continue
					}
					break
				}
				b.WriteByte(s[j])
				j++
			}
			toks = append(toks, token{kind: "str", text: b.String(), pos: pos})
			i = j + 1
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return nil, &Error{Column: pos + 1, Msg: "a [property name] has no closing ]"}
			}
			toks = append(toks, token{kind: "qid", text: s[i+1 : i+j], pos: pos})
			i += j + 1
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			j := i
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.' || s[j] == 'e' || s[j] == 'E' ||
				(s[j] == '+' || s[j] == '-') && j > i && (s[j-1] == 'e' || s[j-1] == 'E')) {
				j++
			}
			toks = append(toks, token{kind: "num", text: s[i:j], pos: pos})
			i = j
		case c == '$' || c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80:
			j := i + 1
			for j < len(s) && (isIdent(s[j]) || c == '$' && s[j] == '-') {
				j++
			}
			kind := "id"
			if c == '$' {
				kind = "sys"
			}
			toks = append(toks, token{kind: kind, text: s[i:j], pos: pos})
			i = j
		case c == '(' || c == ')' || c == ',':
			toks = append(toks, token{kind: string(c), text: string(c), pos: pos})
			i++
		case strings.IndexByte("=<>!+-*/%", c) >= 0:
			op := string(c)
			if i+1 < len(s) {
				if two := s[i : i+2]; two == "!=" || two == "<>" || two == "<=" || two == ">=" {
					op = two
				}
			}
			if op == "!" {
				return nil, &Error{Column: pos + 1, Msg: "! is not an operator: write != or NOT"}
			}
			toks = append(toks, token{kind: "op", text: op, pos: pos})
			i += len(op)
		default:
			r, _ := utf8.DecodeRuneInString(s[i:])
			return nil, &Error{Column: pos + 1, Msg: fmt.Sprintf("unexpected character %q", r)}
		}
	}
	return append(toks, token{kind: "eof", text: "end of the condition", pos: offset + len(s)}), nil
}
