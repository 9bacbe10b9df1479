package query

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Error is a query that does not parse, or uses what IoT Hub's query
// language over twins does not have.
type Error struct {
	Pos int    // 0-based byte offset into the query
	Msg string // what was wrong, and what was expected
}

func (e *Error) Error() string {
	return fmt.Sprintf("position %d: %s", e.Pos+1, e.Msg)
}

func errAt(pos int, format string, args ...any) *Error {
	return &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tPunct // ( ) , . [ ] * = != <> < > <= >= + - / %
	tName  // an escaped property name after a dot: .[[my-config]]
)

type token struct {
	kind tokKind
	pos  int
	text string  // ident / punct text, the source of a string or number
	str  string  // a string literal's value
	num  float64 // a number literal's value
}

// describe is how an error message names a token.
func (t token) describe() string {
	switch t.kind {
	case tEOF:
		return "the end of the query"
	case tString:
		return "string " + t.text
	case tNumber:
		return "number " + t.text
	case tName:
		return "[[" + t.text + "]]"
	}
	return strconv.Quote(t.text)
}

// is reports whether t is the keyword kw (case-insensitive) or the punctuation kw.
func (t token) is(kw string) bool {
	switch t.kind {
	case tIdent:
		return strings.EqualFold(t.text, kw)
	case tPunct:
		return t.text == kw
	}
	return false
}

func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentPart(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// lex splits q into tokens; the last is tEOF.
func lex(q string) ([]token, error) {
	var toks []token
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case isIdentStart(c):
			j := i + 1
			for j < len(q) && isIdentPart(q[j]) {
				j++
			}
			toks = append(toks, token{kind: tIdent, pos: i, text: q[i:j]})
			i = j
		case isDigit(c):
			j := i
			for j < len(q) && isDigit(q[j]) {
				j++
			}
			if j+1 < len(q) && q[j] == '.' && isDigit(q[j+1]) {
				j++
				for j < len(q) && isDigit(q[j]) {
					j++
				}
			}
			if j < len(q) && (q[j] == 'e' || q[j] == 'E') {
				k := j + 1
				if k < len(q) && (q[k] == '+' || q[k] == '-') {
					k++
				}
				if k < len(q) && isDigit(q[k]) {
					for k < len(q) && isDigit(q[k]) {
						k++
					}
					j = k
				}
			}
			if j < len(q) && isIdentPart(q[j]) {
				return nil, errAt(j, "unexpected %q in number %s: put a space or an operator after a number", q[j], q[i:j])
			}
			n, err := strconv.ParseFloat(q[i:j], 64)
			if err != nil {
				return nil, errAt(i, "number %s is out of range", q[i:j])
			}
			toks = append(toks, token{kind: tNumber, pos: i, text: q[i:j], num: n})
			i = j
		case c == '[' && strings.HasPrefix(q[i:], "[[") && len(toks) > 0 && toks[len(toks)-1].is("."):
			// IoT Hub's escaped property name, as in
			// configurations.[[my-deployment]].status: any characters
			// but "]]", taken as they are.
			end := strings.Index(q[i+2:], "]]")
			if end < 0 {
				return nil, errAt(i, "escaped property name [[ is not closed: end it with ]] (as in configurations.[[my-deployment]].status)")
			}
			if end == 0 {
				return nil, errAt(i, "escaped property name [[]] is empty: put the name between [[ and ]]")
			}
			name := q[i+2 : i+2+end]
			toks = append(toks, token{kind: tName, pos: i, text: name})
			i += end + 4
		case c == '\'' || c == '"':
			s, j, err := lexString(q, i)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{kind: tString, pos: i, text: q[i:j], str: s})
			i = j
		default:
			two := ""
			if i+1 < len(q) {
				two = q[i : i+2]
			}
			switch two {
			case "!=", "<>", "<=", ">=":
				toks = append(toks, token{kind: tPunct, pos: i, text: two})
				i += 2
				continue
			}
			if strings.IndexByte("(),.[]*=<>+-/%", c) >= 0 {
				toks = append(toks, token{kind: tPunct, pos: i, text: q[i : i+1]})
				i++
				continue
			}
			r, _ := utf8.DecodeRuneInString(q[i:])
			hint := ""
			switch c {
			case '!':
				hint = ": use != or NOT"
			case '&', '|':
				hint = ": use AND / OR"
			case '`':
				hint = ": quote strings with ' or \""
			}
			return nil, errAt(i, "unexpected character %q%s", r, hint)
		}
	}
	return append(toks, token{kind: tEOF, pos: len(q)}), nil
}

// lexString reads the string literal that starts at q[i] (its quote) and
// returns its value and the offset after it. Escapes are JSON's, plus \' .
func lexString(q string, i int) (string, int, error) {
	quote := q[i]
	var b strings.Builder
	for j := i + 1; j < len(q); {
		c := q[j]
		switch {
		case c == quote:
			return b.String(), j + 1, nil
		case c == '\\':
			if j+1 >= len(q) {
				return "", 0, errAt(j, "unfinished escape at the end of the query: the string started at position %d needs a closing %c", i+1, quote)
			}
			e := q[j+1]
			switch e {
			case '\'', '"', '\\', '/':
				b.WriteByte(e)
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				if j+6 > len(q) {
					return "", 0, errAt(j, `escape \u needs four hex digits`)
				}
				n, err := strconv.ParseUint(q[j+2:j+6], 16, 16)
				if err != nil {
					return "", 0, errAt(j, `escape \u needs four hex digits, found %q`, q[j+2:j+6])
				}
				b.WriteRune(rune(n))
				j += 6
				continue
			default:
				return "", 0, errAt(j, "unknown escape \\%c: use \\\\ \\' \\\" \\/ \\b \\f \\n \\r \\t or \\uXXXX", e)
			}
			j += 2
		default:
			b.WriteByte(c)
			j++
		}
	}
	return "", 0, errAt(i, "string is not closed: add a closing %c", quote)
}
