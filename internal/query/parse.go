package query

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxLength is the longest query accepted, in bytes (IoT Hub's query
// size limit is 8 KiB).
const MaxLength = 8192

// maxNesting bounds how deep expressions nest (parentheses, NOT, unary
// minus), so that a hostile query cannot exhaust the stack.
const maxNesting = 64

// Collection is what a query's FROM names.
type Collection string

const (
	Devices Collection = "devices"         // device twins
	Modules Collection = "devices.modules" // module twins
)

// Aggregate functions of a SELECT.
const (
	aggNone  = ""
	aggCount = "COUNT"
	aggSum   = "SUM"
	aggAvg   = "AVG"
	aggMin   = "MIN"
	aggMax   = "MAX"
)

// Projection is one item of a SELECT list.
type Projection struct {
	Name string // the key of the item in a result row: the alias, a path's last name, or $N
	agg  string // aggCount… or aggNone
	expr expr   // the projected value, or the aggregate's argument (nil for COUNT())
}

// Query is a parsed query.
type Query struct {
	text    string
	from    Collection
	top     int // -1: no TOP
	star    bool
	items   []Projection
	where   *Condition // nil: every twin
	groupBy []expr
	aggs    bool // some item is an aggregate
}

// Condition is a parsed WHERE expression.
type Condition struct {
	text string
	e    expr
}

// String returns the condition as it was given.
func (c *Condition) String() string { return c.text }

// Canonical returns the condition in a normalised form (keywords upper
// case, one space between tokens, parentheses only where needed, strings in
// single quotes): two conditions that read the same have the same form.
func (c *Condition) Canonical() string { return c.e.String() }

// String returns the query as it was given.
func (q *Query) String() string { return q.text }

// From returns the collection the query runs over.
func (q *Query) From() Collection { return q.from }

// Star reports whether the query selects whole twins (SELECT *).
func (q *Query) Star() bool { return q.star }

// Projections returns the items of the SELECT list (none for SELECT *).
func (q *Query) Projections() []Projection { return q.items }

// Aggregated reports whether rows come from an Aggregation (the SELECT
// list has COUNT(), SUM()… or the query has GROUP BY) rather than one row
// per matching twin.
func (q *Query) Aggregated() bool { return q.aggs }

// Top returns the TOP limit, if the query has one.
func (q *Query) Top() (n int, ok bool) { return q.top, q.top >= 0 }

// Where returns the query's condition, nil when it has none.
func (q *Query) Where() *Condition { return q.where }

// Parse parses a whole query:
//
//	SELECT [TOP n] * | item [AS alias] [, item [AS alias]]…
//	FROM devices | devices.modules
//	[WHERE condition]
//	[GROUP BY path [, path]…]
//
// where an item is a path (tags.location.region), COUNT(), or SUM, AVG,
// MIN or MAX of a path.
func Parse(q string) (*Query, error) {
	p, err := newParser(q, MaxLength)
	if err != nil {
		return nil, err
	}
	return p.query()
}

// ParseCondition parses a bare WHERE condition, such as a configuration's
// targetCondition: "tags.environment='prod' AND properties.reported.x > 3".
func ParseCondition(cond string) (*Condition, error) {
	return parseCondition(cond, MaxLength)
}

// parseCondition is ParseCondition with a length limit of its own: the
// canonical form of a condition may be longer than the condition (quoting
// '"' adds a backslash), and tests reparse it.
func parseCondition(cond string, limit int) (*Condition, error) {
	p, err := newParser(cond, limit)
	if err != nil {
		return nil, err
	}
	if p.peek().kind == tEOF {
		return nil, errAt(0, "the condition is empty: expected an expression such as tags.environment = 'prod'")
	}
	e, err := p.expr()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, errAt(t.pos, "expected AND, OR or the end of the condition, found %s", t.describe())
	}
	return &Condition{text: cond, e: e}, nil
}

type parser struct {
	src   string
	toks  []token
	i     int
	depth int
	slots map[string]int // Path.Slot by Path.Key
}

func newParser(q string, limit int) (*parser, error) {
	if len(q) > limit {
		return nil, errAt(limit, "the query is %d bytes long; at most %d are allowed", len(q), limit)
	}
	if !utf8.ValidString(q) {
		i := 0
		for i < len(q) {
			r, n := utf8.DecodeRuneInString(q[i:])
			if r == utf8.RuneError && n == 1 {
				break
			}
			i += n
		}
		return nil, errAt(i, "byte 0x%02x is not UTF-8: a query is UTF-8 text", q[i])
	}
	toks, err := lex(q)
	if err != nil {
		return nil, err
	}
	return &parser{src: q, toks: toks, slots: map[string]int{}}, nil
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

// accept consumes the next token if it is kw.
func (p *parser) accept(kw string) bool {
	if p.peek().is(kw) {
		p.i++
		return true
	}
	return false
}

func (p *parser) expect(kw, what string) (token, error) {
	t := p.peek()
	if !t.is(kw) {
		return t, errAt(t.pos, "expected %s, found %s", what, t.describe())
	}
	return p.next(), nil
}

func (p *parser) query() (*Query, error) {
	q := &Query{text: p.src, top: -1}
	if _, err := p.expect("SELECT", "SELECT"); err != nil {
		return nil, err
	}
	if p.accept("TOP") {
		t := p.next()
		if t.kind != tNumber || t.num != math.Trunc(t.num) || t.num < 0 || t.num > math.MaxInt32 {
			return nil, errAt(t.pos, "expected a whole number after TOP, found %s", t.describe())
		}
		q.top = int(t.num)
	}
	if p.accept("*") {
		q.star = true
	} else if err := p.selectList(q); err != nil {
		return nil, err
	}
	if _, err := p.expect("FROM", "FROM or , after the SELECT list"); err != nil {
		return nil, err
	}
	t := p.next()
	if !t.is("devices") {
		return nil, errAt(t.pos, "expected devices or devices.modules after FROM, found %s", t.describe())
	}
	q.from = Devices
	if p.accept(".") {
		t := p.next()
		switch {
		case t.is("modules"):
			q.from = Modules
		case t.is("jobs"):
			return nil, errAt(t.pos, "devices.jobs is not supported: outpost has no jobs; query devices or devices.modules")
		default:
			return nil, errAt(t.pos, "expected modules after devices., found %s", t.describe())
		}
	}
	if p.accept("WHERE") {
		start := p.peek().pos
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		q.where = &Condition{text: strings.TrimSpace(p.src[start:p.peek().pos]), e: e}
	}
	if t := p.peek(); t.is("GROUP") {
		p.next()
		if _, err := p.expect("BY", "BY after GROUP"); err != nil {
			return nil, err
		}
		for {
			t := p.peek()
			if t.kind != tIdent {
				return nil, errAt(t.pos, "expected a property path to group by, found %s", t.describe())
			}
			e, err := p.path()
			if err != nil {
				return nil, err
			}
			q.groupBy = append(q.groupBy, e)
			if !p.accept(",") {
				break
			}
		}
		q.aggs = true
	}
	if t := p.peek(); t.kind != tEOF {
		want := "WHERE, GROUP BY or the end of the query"
		if q.groupBy != nil {
			want = ", or the end of the query"
		} else if q.where != nil {
			want = "AND, OR, GROUP BY or the end of the query"
		}
		if t.is("ORDER") {
			return nil, errAt(t.pos, "ORDER BY is not supported by IoT Hub's query language")
		}
		return nil, errAt(t.pos, "expected %s, found %s", want, t.describe())
	}
	return q, p.checkGroups(q)
}

func (p *parser) selectList(q *Query) error {
	names := map[string]int{}
	for n := 1; ; n++ {
		t := p.peek()
		item := Projection{}
		switch {
		case t.kind == tIdent && p.toks[p.i+1].is("("):
			name := strings.ToUpper(t.text)
			switch name {
			case aggCount, aggSum, aggAvg, aggMin, aggMax:
			default:
				return errAt(t.pos, "%s() is not an aggregate: expected COUNT(), SUM(), AVG(), MIN() or MAX() in the SELECT list", t.text)
			}
			p.i += 2
			item.agg = name
			if name == aggCount {
				if c := p.peek(); !c.is(")") {
					return errAt(c.pos, "expected ) after COUNT( — COUNT() takes no argument, found %s", c.describe())
				}
			} else {
				if a := p.peek(); a.kind != tIdent {
					return errAt(a.pos, "expected a property path in %s(), found %s", name, a.describe())
				}
				e, err := p.path()
				if err != nil {
					return err
				}
				item.expr = e
			}
			if _, err := p.expect(")", ")"); err != nil {
				return err
			}
			q.aggs = true
			item.Name = "$" + strconv.Itoa(n)
		case t.kind == tIdent && !t.is("FROM"):
			e, err := p.path()
			if err != nil {
				return err
			}
			item.expr = e
			item.Name = e.(*pathExpr).last()
		case t.is("*"):
			return errAt(t.pos, "* cannot be combined with other items: use SELECT * alone")
		default:
			return errAt(t.pos, "expected *, a property path, or COUNT() in the SELECT list, found %s", t.describe())
		}
		if p.accept("AS") {
			a := p.next()
			if a.kind != tIdent {
				return errAt(a.pos, "expected a name after AS, found %s", a.describe())
			}
			item.Name = a.text
		}
		if prev, dup := names[item.Name]; dup {
			return errAt(t.pos, "item %d of the SELECT list has the same name (%s) as item %d: give one of them another name with AS", n, item.Name, prev)
		}
		names[item.Name] = n
		q.items = append(q.items, item)
		if !p.accept(",") {
			return nil
		}
	}
}

// checkGroups checks that, in an aggregated query, every item that is not
// an aggregate is one of the GROUP BY paths.
func (p *parser) checkGroups(q *Query) error {
	if !q.aggs {
		return nil
	}
	if q.star {
		return errAt(strings.Index(strings.ToUpper(p.src), "GROUP"), "SELECT * cannot be grouped: select the GROUP BY paths and aggregates such as COUNT()")
	}
	for _, it := range q.items {
		if it.agg != aggNone {
			continue
		}
		found := false
		for _, g := range q.groupBy {
			if g.String() == it.expr.String() {
				found = true
			}
		}
		if !found {
			return errAt(it.expr.(*pathExpr).pos, "%s is neither an aggregate nor in GROUP BY: add it to GROUP BY or remove it", it.expr)
		}
	}
	return nil
}

// Expressions, loosest first: OR, AND, NOT, comparison / IN / NIN,
// + -, * / %, unary minus, primary.

func (p *parser) nest(pos int) error {
	p.depth++
	if p.depth > maxNesting {
		return errAt(pos, "the expression nests more than %d levels deep", maxNesting)
	}
	return nil
}

func (p *parser) expr() (expr, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.peek().is("OR") {
		p.next()
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = &logicExpr{op: "OR", l: l, r: r}
	}
	return l, nil
}

func (p *parser) and() (expr, error) {
	l, err := p.not()
	if err != nil {
		return nil, err
	}
	for p.peek().is("AND") {
		p.next()
		r, err := p.not()
		if err != nil {
			return nil, err
		}
		l = &logicExpr{op: "AND", l: l, r: r}
	}
	return l, nil
}

func (p *parser) not() (expr, error) {
	if t := p.peek(); t.is("NOT") {
		p.next()
		if err := p.nest(t.pos); err != nil {
			return nil, err
		}
		e, err := p.not()
		p.depth--
		if err != nil {
			return nil, err
		}
		return &notExpr{e: e}, nil
	}
	return p.comparison()
}

var comparisons = map[string]string{"=": "=", "!=": "!=", "<>": "!=", "<": "<", ">": ">", "<=": "<=", ">=": ">="}

func (p *parser) comparison() (expr, error) {
	l, err := p.additive()
	if err != nil {
		return nil, err
	}
	t := p.peek()
	if op, ok := comparisons[t.text]; ok && t.kind == tPunct {
		p.next()
		r, err := p.additive()
		if err != nil {
			return nil, err
		}
		return &cmpExpr{op: op, l: l, r: r}, nil
	}
	if t.is("IN") || t.is("NIN") {
		p.next()
		neg := t.is("NIN")
		open := p.next()
		closer := ""
		switch {
		case open.is("["):
			closer = "]"
		case open.is("("):
			closer = ")"
		default:
			return nil, errAt(open.pos, "expected [ after %s (a list such as ['a', 'b']), found %s", strings.ToUpper(t.text), open.describe())
		}
		var list []expr
		if !p.accept(closer) {
			for {
				e, err := p.additive()
				if err != nil {
					return nil, err
				}
				list = append(list, e)
				if p.accept(closer) {
					break
				}
				if _, err := p.expect(",", ", or "+closer+" in the list"); err != nil {
					return nil, err
				}
			}
		}
		return &inExpr{e: l, list: list, neg: neg}, nil
	}
	return l, nil
}

func (p *parser) additive() (expr, error) { return p.arith("+-", p.multiplicative) }

func (p *parser) multiplicative() (expr, error) { return p.arith("*/%", p.unary) }

// arith parses operands (by operand) joined by the one-byte operators ops,
// left-associative.
func (p *parser) arith(ops string, operand func() (expr, error)) (expr, error) {
	l, err := operand()
	if err != nil {
		return nil, err
	}
	for t := p.peek(); t.kind == tPunct && len(t.text) == 1 && strings.Contains(ops, t.text); t = p.peek() {
		p.next()
		r, err := operand()
		if err != nil {
			return nil, err
		}
		l = &arithExpr{op: t.text[0], l: l, r: r}
	}
	return l, nil
}

func (p *parser) unary() (expr, error) {
	t := p.peek()
	if t.is("-") || t.is("+") {
		p.next()
		if n := p.peek(); n.kind == tNumber && t.text == "-" { // a negative literal
			p.next()
			return &litExpr{v: -n.num}, nil
		}
		if err := p.nest(t.pos); err != nil {
			return nil, err
		}
		e, err := p.unary()
		p.depth--
		if err != nil {
			return nil, err
		}
		if t.text == "+" {
			return &arithExpr{op: '+', l: &litExpr{v: 0.0}, r: e}, nil
		}
		return &arithExpr{op: '-', l: &litExpr{v: 0.0}, r: e}, nil
	}
	return p.primary()
}

// typeFuncs and stringFuncs are the functions IoT Hub has over twins.
var twinFuncs = map[string]int{
	"IS_DEFINED": 1, "IS_NULL": 1, "IS_BOOL": 1, "IS_NUMBER": 1, "IS_STRING": 1,
	"IS_OBJECT": 1, "IS_PRIMITIVE": 1, "IS_ARRAY": 1,
	"STARTSWITH": 2, "ENDSWITH": 2,
}

// routeFuncs are functions of IoT Hub's message routing queries, which
// twin queries do not have.
var routeFuncs = map[string]bool{
	"ABS": true, "EXP": true, "POWER": true, "SQUARE": true, "CEILING": true, "FLOOR": true,
	"SIGN": true, "SQRT": true, "AS_NUMBER": true, "CONCAT": true, "LENGTH": true, "LOWER": true,
	"UPPER": true, "SUBSTRING": true, "INDEX_OF": true, "STARTS_WITH": true, "ENDS_WITH": true,
	"CONTAINS": true, "$BODY": true, "ROUND": true, "LOG": true, "LOG10": true,
}

func (p *parser) primary() (expr, error) {
	t := p.peek()
	switch t.kind {
	case tNumber:
		p.next()
		return &litExpr{v: t.num}, nil
	case tString:
		p.next()
		return &litExpr{v: t.str}, nil
	case tEOF:
		return nil, errAt(t.pos, "expected an expression, found the end of the query")
	case tPunct:
		switch t.text {
		case "(":
			p.next()
			if err := p.nest(t.pos); err != nil {
				return nil, err
			}
			e, err := p.expr()
			p.depth--
			if err != nil {
				return nil, err
			}
			if _, err := p.expect(")", ") to close the ( at position "+strconv.Itoa(t.pos+1)); err != nil {
				return nil, err
			}
			return e, nil
		case "[":
			p.next()
			var list []expr
			if !p.accept("]") {
				for {
					if err := p.nest(t.pos); err != nil {
						return nil, err
					}
					e, err := p.additive()
					p.depth--
					if err != nil {
						return nil, err
					}
					list = append(list, e)
					if p.accept("]") {
						break
					}
					if _, err := p.expect(",", ", or ] in the array"); err != nil {
						return nil, err
					}
				}
			}
			return &arrayExpr{list: list}, nil
		}
		return nil, errAt(t.pos, "expected an expression, found %s", t.describe())
	}
	// An identifier: a keyword literal, a function call, or a path.
	switch {
	case t.is("true"), t.is("false"):
		p.next()
		return &litExpr{v: t.is("true")}, nil
	case t.is("null"):
		p.next()
		return &litExpr{v: nil}, nil
	case t.is("undefined"):
		p.next()
		return &litExpr{v: undefined}, nil
	}
	if p.toks[p.i+1].is("(") {
		return p.call()
	}
	for _, kw := range []string{"SELECT", "FROM", "WHERE", "GROUP", "AND", "OR", "IN", "NIN", "AS"} {
		if t.is(kw) {
			return nil, errAt(t.pos, "expected an expression, found the keyword %s", strings.ToUpper(t.text))
		}
	}
	return p.path()
}

func (p *parser) call() (expr, error) {
	t := p.next()
	p.next() // (
	name := strings.ToUpper(t.text)
	arity, ok := twinFuncs[name]
	if !ok {
		if routeFuncs[name] {
			return nil, errAt(t.pos, "%s() is not supported in twin queries (IoT Hub has it in message routing queries only); twin queries have IS_DEFINED, IS_NULL, IS_BOOL, IS_NUMBER, IS_STRING, IS_OBJECT, IS_ARRAY, IS_PRIMITIVE, STARTSWITH and ENDSWITH", t.text)
		}
		switch name {
		case aggCount, aggSum, aggAvg, aggMin, aggMax:
			return nil, errAt(t.pos, "%s() belongs in the SELECT list, not in a condition", name)
		}
		return nil, errAt(t.pos, "unknown function %s(): twin queries have IS_DEFINED, IS_NULL, IS_BOOL, IS_NUMBER, IS_STRING, IS_OBJECT, IS_ARRAY, IS_PRIMITIVE, STARTSWITH and ENDSWITH", t.text)
	}
	if err := p.nest(t.pos); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	var args []expr
	if !p.accept(")") {
		for {
			e, err := p.expr()
			if err != nil {
				return nil, err
			}
			args = append(args, e)
			if p.accept(")") {
				break
			}
			if _, err := p.expect(",", ", or ) in the arguments of "+name+"()"); err != nil {
				return nil, err
			}
		}
	}
	if len(args) != arity {
		return nil, errAt(t.pos, "%s() takes %d argument%s, not %d", name, arity, plural(arity), len(args))
	}
	return &funcExpr{name: name, args: args}, nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// path parses a property path: name(.name | [index] | ['name'])*.
// A leading "devices." or "devices.modules." (IoT Hub accepts
// devices.deviceId for deviceId) is dropped.
func (p *parser) path() (expr, error) {
	t := p.next()
	if t.kind != tIdent {
		return nil, errAt(t.pos, "expected a property name, found %s", t.describe())
	}
	e := &pathExpr{pos: t.pos, p: Path{segs: []seg{{name: t.text}}}}
	for {
		switch n := p.peek(); {
		case n.is("."):
			p.next()
			m := p.next()
			if m.kind != tIdent && m.kind != tName {
				return nil, errAt(m.pos, "expected a property name after ., found %s", m.describe())
			}
			e.p.segs = append(e.p.segs, seg{name: m.text})
		case n.is("["):
			p.next()
			ix := p.next()
			switch {
			case ix.kind == tString:
				e.p.segs = append(e.p.segs, seg{name: ix.str})
			case ix.kind == tNumber && ix.num == math.Trunc(ix.num) && ix.num >= 0 && ix.num <= math.MaxInt32:
				e.p.segs = append(e.p.segs, seg{index: int(ix.num), isIndex: true})
			default:
				return nil, errAt(ix.pos, "expected a quoted property name or an array index in [ ], found %s", ix.describe())
			}
			if _, err := p.expect("]", "]"); err != nil {
				return nil, err
			}
		default:
			if segs := e.p.segs; len(segs) > 1 && !segs[0].isIndex && segs[0].name == "devices" {
				e.p.segs = segs[1:]
				if segs := e.p.segs; len(segs) > 1 && !segs[0].isIndex && segs[0].name == "modules" {
					e.p.segs = segs[1:]
				}
			}
			e.p.setKey()
			slot, ok := p.slots[e.p.Key]
			if !ok {
				slot = len(p.slots)
				p.slots[e.p.Key] = slot
			}
			e.p.Slot = slot
			return e, nil
		}
	}
}
