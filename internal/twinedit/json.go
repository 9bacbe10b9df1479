package twinedit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/outpost-edge/outpost/internal/twin"
)

// Error is a problem in an edited document, with its place when known.
type Error struct {
	Line, Col int    // 1-based; 0 when the problem has no one place
	Path      string // the JSON path of the offending member, when known
	Msg       string
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return e.Msg
	}
	return fmt.Sprintf("at %d:%d: %s", e.Line, e.Col, e.Msg)
}

// In formats e as file:line:col: msg (file: msg without a place).
func (e *Error) In(file string) string {
	if e.Line == 0 {
		return file + ": " + e.Msg
	}
	return fmt.Sprintf("%s:%d:%d: %s", file, e.Line, e.Col, e.Msg)
}

// ProblemIn says what is wrong with file's JSON: file:line:col: msg when
// err is an *Error that knows the place, file: err otherwise.
func ProblemIn(file string, err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.In(file)
	}
	return file + ": " + err.Error()
}

// CheckObject checks that data is exactly one JSON object. Its errors are
// *Error, which say where (line:col) the problem is.
func CheckObject(data []byte) error {
	var v any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return posError(data, err)
	}
	off := int(dec.InputOffset()) // the end of the object
	if _, err := dec.Token(); err != io.EOF {
		off = skipSpace(data, off)
		line, col := LineCol(data, off)
		return &Error{Line: line, Col: col, Msg: "unexpected data after the JSON object"}
	}
	if _, ok := v.(map[string]any); !ok {
		return &Error{Msg: fmt.Sprintf("got %s, not a JSON object", twin.KindOf(v))}
	}
	return nil
}

// posError turns a JSON decoding error into an *Error with line:col.
func posError(data []byte, err error) *Error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		line, col := LineCol(data, int(se.Offset)-1)
		return &Error{Line: line, Col: col, Msg: se.Error()}
	case errors.As(err, &te):
		line, col := LineCol(data, int(te.Offset)-1)
		return &Error{Line: line, Col: col, Msg: te.Error()}
	case errors.Is(err, io.EOF) && len(bytes.TrimSpace(data)) == 0:
		return &Error{Msg: "it is empty"}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		line, col := LineCol(data, len(data))
		return &Error{Line: line, Col: col, Msg: "unexpected end of JSON input"}
	}
	return &Error{Msg: err.Error()}
}

// LineCol turns a byte offset into a 1-based line and column.
func LineCol(data []byte, off int) (line, col int) {
	off = max(0, min(off, len(data)))
	before := data[:off]
	line = 1 + bytes.Count(before, []byte("\n"))
	col = off - bytes.LastIndexByte(before, '\n')
	return line, col
}

func skipSpace(data []byte, off int) int {
	for off < len(data) && strings.IndexByte(" \t\r\n", data[off]) >= 0 {
		off++
	}
	return off
}

// segment is one step of a JSON path: a member name or an array index.
type segment struct {
	key     string
	index   int
	isIndex bool
}

// parsePath splits a JSON path as the twin core writes it
// (properties.desired.a[2]["x.y"]) into its steps.
func parsePath(p string) ([]segment, bool) {
	var segs []segment
	for p != "" {
		switch p[0] {
		case '.':
			p = p[1:]
		case '[':
			end := strings.IndexByte(p, ']')
			if end < 0 {
				return nil, false
			}
			if p[1] == '"' {
				q, err := strconv.QuotedPrefix(p[1:])
				if err != nil {
					return nil, false
				}
				key, _ := strconv.Unquote(q)
				segs = append(segs, segment{key: key})
				p = p[1+len(q):]
				if !strings.HasPrefix(p, "]") {
					return nil, false
				}
				p = p[1:]
				continue
			}
			n, err := strconv.Atoi(p[1:end])
			if err != nil {
				return nil, false
			}
			segs = append(segs, segment{index: n, isIndex: true})
			p = p[end+1:]
		default:
			end := strings.IndexAny(p, ".[")
			if end < 0 {
				end = len(p)
			}
			segs = append(segs, segment{key: p[:end]})
			p = p[end:]
		}
	}
	return segs, true
}

// locate returns the offset in data (valid JSON) of the member or element
// at path: where its name starts for a member, where it starts for an
// array element.
func locate(data []byte, path string) (int, bool) {
	segs, ok := parsePath(path)
	if !ok || len(segs) == 0 {
		return 0, false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return walk(dec, data, segs)
}

// walk reads the next value of dec, looking for segs inside it.
func walk(dec *json.Decoder, data []byte, segs []segment) (int, bool) {
	tok, err := dec.Token()
	if err != nil {
		return 0, false
	}
	seg := segs[0]
	switch tok {
	case json.Delim('{'):
		for dec.More() {
			off := skipSeparators(data, int(dec.InputOffset()))
			kt, err := dec.Token()
			if err != nil {
				return 0, false
			}
			if key, _ := kt.(string); !seg.isIndex && key == seg.key {
				if len(segs) == 1 {
					return off, true
				}
				return walk(dec, data, segs[1:])
			}
			if !skipValue(dec) {
				return 0, false
			}
		}
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if seg.isIndex && i == seg.index {
				if len(segs) == 1 {
					return skipSeparators(data, int(dec.InputOffset())), true
				}
				return walk(dec, data, segs[1:])
			}
			if !skipValue(dec) {
				return 0, false
			}
		}
	}
	return 0, false
}

func skipValue(dec *json.Decoder) bool {
	var raw json.RawMessage
	return dec.Decode(&raw) == nil
}

// skipSeparators skips white space, commas and colons from off.
func skipSeparators(data []byte, off int) int {
	for off < len(data) && strings.IndexByte(" \t\r\n,:", data[off]) >= 0 {
		off++
	}
	return off
}
