package twin

import (
	"strconv"
	"strings"
)

// Error is the error returned for a document, patch or body that is not
// valid or that would break a limit. Path is the JSON path of the offending
// node (for example "properties.desired.a.b" or `tags["x.y"]`) and Reason
// says what is wrong. Callers map it to HTTP 400.
type Error struct {
	Path   string
	Reason string
}

func (e *Error) Error() string {
	if e.Path == "" {
		return e.Reason
	}
	return e.Path + ": " + e.Reason
}

// path is a JSON path built on the stack while walking a document; it is
// turned into a string only when an error is reported.
type path struct {
	parent  *path
	key     string
	index   int
	isIndex bool
}

func (p *path) String() string {
	if p == nil {
		return ""
	}
	var elems []*path
	for q := p; q != nil; q = q.parent {
		elems = append(elems, q)
	}
	var b strings.Builder
	for i := len(elems) - 1; i >= 0; i-- {
		e := elems[i]
		switch {
		case e.isIndex:
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(e.index))
			b.WriteByte(']')
		case e.parent == nil:
			b.WriteString(e.key)
		case plainKey(e.key):
			b.WriteByte('.')
			b.WriteString(e.key)
		default:
			b.WriteByte('[')
			b.WriteString(strconv.Quote(e.key))
			b.WriteByte(']')
		}
	}
	return b.String()
}

func (p *path) errorf(reason string) *Error {
	return &Error{Path: p.String(), Reason: reason}
}

// plainKey reports whether key can be written after a dot in a path without
// ambiguity.
func plainKey(key string) bool {
	return checkKey(key) == "" && !strings.ContainsAny(key, `[]"`)
}
