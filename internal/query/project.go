package query

import (
	"encoding/json"
	"strings"
)

// Project returns the row a non-aggregated query makes of a matching twin:
// one key per SELECT item (its Name), left out when the twin does not have
// the property. For SELECT * it returns doc itself.
func (q *Query) Project(doc map[string]any) map[string]any {
	if q.star {
		return doc
	}
	return q.project(mapDoc(doc))
}

// ProjectGetter is Project over a twin held as a Getter; for SELECT * it
// returns nil (the caller has the twin).
func (q *Query) ProjectGetter(g Getter) map[string]any {
	if q.star {
		return nil
	}
	return q.project(g)
}

func (q *Query) project(doc Getter) map[string]any {
	row := make(map[string]any, len(q.items))
	for _, it := range q.items {
		if it.expr == nil {
			continue
		}
		if v := it.expr.eval(doc); v != undefined {
			row[it.Name] = v
		}
	}
	return row
}

// Aggregation computes the rows of an aggregated query: Add each matching
// twin, then Rows.
type Aggregation struct {
	q      *Query
	groups map[string]*group
	order  []*group
}

type group struct {
	keys []any // the GROUP BY values (undefined ones too)
	accs []acc // one per SELECT item
}

type acc struct {
	n        int     // COUNT(); numbers seen for SUM/AVG/MIN/MAX
	sum      float64 // SUM, AVG
	min, max any     // MIN, MAX: numbers and strings
}

// NewAggregation starts an aggregation for q (q.Aggregated() must be true).
func (q *Query) NewAggregation() *Aggregation {
	return &Aggregation{q: q, groups: map[string]*group{}}
}

// Add counts one matching twin.
func (a *Aggregation) Add(doc map[string]any) { a.add(mapDoc(doc)) }

// AddGetter is Add over a twin held as a Getter.
func (a *Aggregation) AddGetter(g Getter) { a.add(g) }

func (a *Aggregation) add(doc Getter) {
	keys := make([]any, len(a.q.groupBy))
	var kb strings.Builder
	for i, g := range a.q.groupBy {
		keys[i] = g.eval(doc)
		kb.WriteString(groupKey(keys[i]))
		kb.WriteByte(0)
	}
	k := kb.String()
	gr := a.groups[k]
	if gr == nil {
		gr = &group{keys: keys, accs: make([]acc, len(a.q.items))}
		a.groups[k] = gr
		a.order = append(a.order, gr)
	}
	for i, it := range a.q.items {
		ac := &gr.accs[i]
		switch it.agg {
		case aggCount:
			ac.n++
		case aggSum, aggAvg:
			if f, ok := it.expr.eval(doc).(float64); ok {
				ac.n++
				ac.sum += f
			}
		case aggMin, aggMax:
			v := it.expr.eval(doc)
			switch v.(type) {
			case float64, string:
			default:
				continue
			}
			ac.n++
			if ac.min == nil || compare("<", v, ac.min) == true || kind(v) == "number" && kind(ac.min) == "string" {
				ac.min = v // numbers order before strings, as in Cosmos DB
			}
			if ac.max == nil || compare(">", v, ac.max) == true || kind(v) == "string" && kind(ac.max) == "number" {
				ac.max = v
			}
		}
	}
}

func groupKey(v any) string {
	if v == undefined {
		return "u"
	}
	b, _ := json.Marshal(v)
	return "d" + string(b)
}

// Rows returns one row per group, in the order the groups were first seen
// (a query without GROUP BY has one row, even over no twins). A GROUP BY
// value or aggregate that is undefined is left out of its row.
func (a *Aggregation) Rows() []map[string]any {
	order := a.order
	if len(order) == 0 && len(a.q.groupBy) == 0 {
		order = []*group{{accs: make([]acc, len(a.q.items))}}
	}
	rows := make([]map[string]any, 0, len(order))
	for _, gr := range order {
		row := make(map[string]any, len(a.q.items))
		for i, it := range a.q.items {
			ac := gr.accs[i]
			var v any = undefined
			switch it.agg {
			case aggNone:
				for j, g := range a.q.groupBy {
					if g.String() == it.expr.String() {
						v = gr.keys[j]
					}
				}
			case aggCount:
				v = float64(ac.n)
			case aggSum:
				if ac.n > 0 {
					v = ac.sum
				}
			case aggAvg:
				if ac.n > 0 {
					v = ac.sum / float64(ac.n)
				}
			case aggMin:
				if ac.n > 0 {
					v = ac.min
				}
			case aggMax:
				if ac.n > 0 {
					v = ac.max
				}
			}
			if v != undefined {
				row[it.Name] = v
			}
		}
		rows = append(rows, row)
	}
	return rows
}
