package query

import (
	"cmp"
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
)

// undefinedT is the value of a property a twin does not have. As in IoT
// Hub, a comparison or function over it is undefined, and a condition that
// is undefined does not match.
type undefinedT struct{}

var undefined any = undefinedT{}

type expr interface {
	eval(doc Getter) any
	String() string
}

// Getter is a twin: Get returns the value at path p, as encoding/json
// would decode it (float64, string, bool, nil, map[string]any, []any), and
// false when the twin has no such property. A map[string]any is read with
// Match, Project and Add; a Getter lets a caller hold twins in another form
// (the hub's query index) and read them with MatchGetter, ProjectGetter and
// AddGetter.
type Getter interface {
	Get(p *Path) (any, bool)
}

// Path is a property path of a parsed query or condition.
type Path struct {
	// Key is the property names joined with ".", with array indexes as
	// "[n]": "tags.location.region", "tags.list[0].name".
	Key string
	// Slot numbers the distinct paths of one Parse or ParseCondition, from
	// 0: a Getter may cache what it looks up for a path by slot, for as long
	// as it reads with that query or condition only.
	Slot int
	segs []seg
}

// setKey computes Key from segs.
func (p *Path) setKey() {
	var b strings.Builder
	for i, s := range p.segs {
		if s.isIndex {
			b.WriteString("[" + strconv.Itoa(s.index) + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.name)
	}
	p.Key = b.String()
}

// mapDoc is a twin as encoding/json decodes it.
type mapDoc map[string]any

func (m mapDoc) Get(p *Path) (any, bool) {
	var v any = map[string]any(m)
	for _, s := range p.segs {
		if s.isIndex {
			a, ok := v.([]any)
			if !ok || s.index >= len(a) {
				return nil, false
			}
			v = a[s.index]
			continue
		}
		o, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = o[s.name]; !ok {
			return nil, false
		}
	}
	return v, true
}

// Match reports whether the twin doc (as IoT Hub's JSON, decoded with
// encoding/json or built of the same types) satisfies the condition.
func (c *Condition) Match(doc map[string]any) bool {
	return c.e.eval(mapDoc(doc)) == true
}

// MatchGetter is Match over a twin held as a Getter.
func (c *Condition) MatchGetter(g Getter) bool {
	return c.e.eval(g) == true
}

// Match reports whether doc satisfies the query's WHERE (true without one).
func (q *Query) Match(doc map[string]any) bool {
	return q.where == nil || q.where.Match(doc)
}

// MatchGetter is Match over a twin held as a Getter.
func (q *Query) MatchGetter(g Getter) bool {
	return q.where == nil || q.where.MatchGetter(g)
}

// Paths returns the property paths the condition reads, each as its names
// (array indexes as decimal strings), so that a caller can tell which parts of
// a twin it depends on.
func (c *Condition) Paths() [][]string { return pathsOf(c.e) }

// Paths returns the property paths the query reads: in its SELECT list,
// WHERE and GROUP BY.
func (q *Query) Paths() [][]string {
	var es []expr
	for _, it := range q.items {
		if it.expr != nil {
			es = append(es, it.expr)
		}
	}
	if q.where != nil {
		es = append(es, q.where.e)
	}
	return pathsOf(append(es, q.groupBy...)...)
}

func pathsOf(es ...expr) [][]string {
	var out [][]string
	for _, e := range es {
		walk(e, func(e expr) {
			if p, ok := e.(*pathExpr); ok {
				names := make([]string, len(p.p.segs))
				for i, s := range p.p.segs {
					names[i] = s.String()
				}
				out = append(out, names)
			}
		})
	}
	return out
}

func walk(e expr, fn func(expr)) {
	fn(e)
	switch e := e.(type) {
	case *logicExpr:
		walk(e.l, fn)
		walk(e.r, fn)
	case *notExpr:
		walk(e.e, fn)
	case *cmpExpr:
		walk(e.l, fn)
		walk(e.r, fn)
	case *arithExpr:
		walk(e.l, fn)
		walk(e.r, fn)
	case *inExpr:
		walk(e.e, fn)
		for _, x := range e.list {
			walk(x, fn)
		}
	case *arrayExpr:
		for _, x := range e.list {
			walk(x, fn)
		}
	case *funcExpr:
		for _, x := range e.args {
			walk(x, fn)
		}
	}
}

type seg struct {
	name    string
	index   int
	isIndex bool
}

func (s seg) String() string {
	if s.isIndex {
		return strconv.Itoa(s.index)
	}
	return s.name
}

type pathExpr struct {
	pos int
	p   Path
}

func (e *pathExpr) last() string { return e.p.segs[len(e.p.segs)-1].String() }

func (e *pathExpr) eval(doc Getter) any {
	v, ok := doc.Get(&e.p)
	if !ok {
		return undefined
	}
	return norm(v)
}

func (e *pathExpr) String() string {
	var b strings.Builder
	for i, s := range e.p.segs {
		switch {
		case s.isIndex:
			b.WriteString("[" + strconv.Itoa(s.index) + "]")
		case !isName(s.name):
			b.WriteString("[" + quote(s.name) + "]")
		default:
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s.name)
		}
	}
	return b.String()
}

func isName(s string) bool {
	if s == "" || !isIdentStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isIdentPart(s[i]) {
			return false
		}
	}
	switch strings.ToUpper(s) {
	case "TRUE", "FALSE", "NULL", "UNDEFINED", "AND", "OR", "NOT", "IN", "NIN", "SELECT", "FROM", "WHERE", "GROUP", "AS", "BY", "TOP":
		return false
	}
	return true
}

// norm turns the numbers a decoded document may hold into float64.
func norm(v any) any {
	switch n := v.(type) {
	case float64, string, bool, nil, map[string]any, []any:
		return v
	case json.Number:
		f, err := n.Float64()
		if err != nil {
			return undefined
		}
		return f
	case int:
		return float64(n)
	case int64:
		return float64(n)
	case int32:
		return float64(n)
	case uint64:
		return float64(n)
	case float32:
		return float64(n)
	}
	return v
}

type litExpr struct{ v any }

func (e *litExpr) eval(Getter) any { return e.v }

func (e *litExpr) String() string { return literal(e.v) }

func literal(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case undefinedT:
		return "undefined"
	case bool:
		return strconv.FormatBool(v)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case string:
		return quote(v)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func quote(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for _, r := range s {
		switch r {
		case '\'', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x20 {
				b.WriteString(`\u00`)
				b.WriteByte("0123456789abcdef"[r>>4])
				b.WriteByte("0123456789abcdef"[r&15])
				continue
			}
			b.WriteRune(r)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

type arrayExpr struct{ list []expr }

func (e *arrayExpr) eval(doc Getter) any {
	out := make([]any, 0, len(e.list))
	for _, x := range e.list {
		v := x.eval(doc)
		if v == undefined {
			continue // as in Cosmos DB: an undefined element is left out
		}
		out = append(out, v)
	}
	return out
}

func (e *arrayExpr) String() string { return "[" + join(e.list) + "]" }

func join(list []expr) string {
	parts := make([]string, len(list))
	for i, x := range list {
		parts[i] = x.String()
	}
	return strings.Join(parts, ", ")
}

// Precedence, for String: higher binds tighter.
func prec(e expr) int {
	switch e := e.(type) {
	case *logicExpr:
		if e.op == "OR" {
			return 1
		}
		return 2
	case *notExpr:
		return 3
	case *cmpExpr, *inExpr:
		return 4
	case *arithExpr:
		if e.op == '+' || e.op == '-' {
			return 5
		}
		return 6
	}
	return 8
}

// paren writes e, in parentheses when it binds looser than min.
func paren(e expr, min int) string {
	if prec(e) < min {
		return "(" + e.String() + ")"
	}
	return e.String()
}

type logicExpr struct {
	op   string // AND, OR
	l, r expr
}

func (e *logicExpr) eval(doc Getter) any {
	l := e.l.eval(doc)
	if e.op == "AND" {
		if l == false {
			return false
		}
		r := e.r.eval(doc)
		if r == false {
			return false
		}
		if l == true && r == true {
			return true
		}
		return undefined
	}
	if l == true {
		return true
	}
	r := e.r.eval(doc)
	if r == true {
		return true
	}
	if l == false && r == false {
		return false
	}
	return undefined
}

func (e *logicExpr) String() string {
	p := prec(e)
	return paren(e.l, p) + " " + e.op + " " + paren(e.r, p+1)
}

type notExpr struct{ e expr }

func (e *notExpr) eval(doc Getter) any {
	switch e.e.eval(doc) {
	case true:
		return false
	case false:
		return true
	}
	return undefined
}

func (e *notExpr) String() string { return "NOT " + paren(e.e, 3) }

type cmpExpr struct {
	op   string // = != < > <= >=
	l, r expr
}

func (e *cmpExpr) eval(doc Getter) any {
	return compare(e.op, e.l.eval(doc), e.r.eval(doc))
}

func (e *cmpExpr) String() string { return paren(e.l, 5) + " " + e.op + " " + paren(e.r, 5) }

// compare applies a comparison the way IoT Hub does: values of different
// types (and undefined ones) compare to undefined; numbers and strings
// are ordered, other values only equal or not.
func compare(op string, l, r any) any {
	if l == undefined || r == undefined {
		return undefined
	}
	switch lv := l.(type) {
	case float64:
		if rv, ok := r.(float64); ok {
			return order(op, cmp.Compare(lv, rv))
		}
		return undefined
	case string:
		if rv, ok := r.(string); ok {
			return order(op, strings.Compare(lv, rv))
		}
		return undefined
	}
	if kind(l) != kind(r) {
		return undefined
	}
	switch op {
	case "=":
		return equal(l, r)
	case "!=":
		return !equal(l, r)
	}
	return undefined
}

// kind names a value's JSON type.
func kind(v any) string {
	switch norm(v).(type) {
	case nil:
		return "null"
	case bool:
		return "bool"
	case float64:
		return "number"
	case string:
		return "string"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return "undefined"
}

func equal(a, b any) bool {
	a, b = norm(a), norm(b)
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for k, x := range av {
			y, ok := bv[k]
			if !ok || !equal(x, y) {
				return false
			}
		}
		return true
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for i := range av {
			if !equal(av[i], bv[i]) {
				return false
			}
		}
		return true
	}
	return reflect.TypeOf(a) == reflect.TypeOf(b) && a == b
}

// order applies op to the result c of a three-way comparison.
func order(op string, c int) bool {
	switch op {
	case "=":
		return c == 0
	case "!=":
		return c != 0
	case "<":
		return c < 0
	case ">":
		return c > 0
	case "<=":
		return c <= 0
	}
	return c >= 0
}

type arithExpr struct {
	op   byte // + - * / %
	l, r expr
}

func (e *arithExpr) eval(doc Getter) any {
	l, lok := e.l.eval(doc).(float64)
	r, rok := e.r.eval(doc).(float64)
	if !lok || !rok {
		return undefined
	}
	var v float64
	switch e.op {
	case '+':
		v = l + r
	case '-':
		v = l - r
	case '*':
		v = l * r
	case '/':
		v = l / r
	case '%':
		v = math.Mod(l, r)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return undefined
	}
	return v
}

func (e *arithExpr) String() string {
	p := prec(e)
	if l, ok := e.l.(*litExpr); ok && l.v == 0.0 && (e.op == '-' || e.op == '+') {
		if _, lit := e.r.(*litExpr); !lit { // unary minus / plus
			return string(e.op) + paren(e.r, 7)
		}
	}
	return paren(e.l, p) + " " + string(e.op) + " " + paren(e.r, p+1)
}

type inExpr struct {
	e    expr
	list []expr
	neg  bool
}

func (e *inExpr) eval(doc Getter) any {
	v := e.e.eval(doc)
	if v == undefined {
		return undefined
	}
	found := false
	for _, x := range e.list {
		if compare("=", v, x.eval(doc)) == true {
			found = true
			break
		}
	}
	return found != e.neg
}

func (e *inExpr) String() string {
	op := " IN ["
	if e.neg {
		op = " NIN ["
	}
	return paren(e.e, 5) + op + join(e.list) + "]"
}

type funcExpr struct {
	name string
	args []expr
}

func (e *funcExpr) eval(doc Getter) any {
	v := e.args[0].eval(doc)
	switch e.name {
	case "IS_DEFINED":
		return v != undefined
	case "IS_NULL":
		return v != undefined && v == nil
	case "IS_BOOL":
		_, ok := v.(bool)
		return ok
	case "IS_NUMBER":
		_, ok := v.(float64)
		return ok
	case "IS_STRING":
		_, ok := v.(string)
		return ok
	case "IS_OBJECT":
		_, ok := v.(map[string]any)
		return ok
	case "IS_ARRAY":
		_, ok := v.([]any)
		return ok
	case "IS_PRIMITIVE":
		switch v.(type) {
		case nil, bool, float64, string:
			return v != undefined
		}
		return false
	case "STARTSWITH", "ENDSWITH":
		s, ok1 := v.(string)
		x, ok2 := e.args[1].eval(doc).(string)
		if !ok1 || !ok2 {
			return undefined
		}
		if e.name == "STARTSWITH" {
			return strings.HasPrefix(s, x)
		}
		return strings.HasSuffix(s, x)
	}
	return undefined
}

func (e *funcExpr) String() string { return e.name + "(" + join(e.args) + ")" }
