package twin

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// CheckJSON reports what a strict JSON parser refuses in data but Go's
// encoding/json lets through: strings (keys included) that are not valid
// UTF-8 or that hold an unpaired UTF-16 surrogate escape (encoding/json
// replaces both with U+FFFD), and a key that appears twice in one object
// (encoding/json keeps the last). The error is an *Error whose Path names
// the offending node.
func CheckJSON(data []byte) error {
	if checkFast(data) {
		return nil
	}
	return checkJSONSlow(data)
}

// checkJSONSlow is CheckJSON through encoding/json and the strict scanner:
// it defines what CheckJSON accepts and says what is wrong with the rest.
func checkJSONSlow(data []byte) error {
	if !json.Valid(data) {
		_, err := decode(data)
		return invalidJSON(nil, err)
	}
	if e := checkStrict(data, nil); e != nil {
		return e
	}
	return nil
}

// decodeAt decodes data, valid and strict JSON, found at path p (nil for a
// whole body); its errors are *Error naming the path.
func decodeAt(data []byte, p *path) (any, error) {
	if v, err := decodeValueFast(data); err == nil {
		return v, nil
	}
	return decodeAtSlow(data, p)
}

// decodeAtSlow is decodeAt through encoding/json and the strict scanner: it
// defines what decodeAt accepts and says what is wrong with what it refuses.
func decodeAtSlow(data []byte, p *path) (any, error) {
	v, err := decode(data)
	if err != nil {
		return nil, invalidJSON(p, err)
	}
	if e := checkStrict(data, p); e != nil {
		return nil, e
	}
	return v, nil
}

func checkStrict(data []byte, p *path) *Error {
	s := strictScanner{data: data}
	return s.value(p)
}

// strictScanner walks JSON that encoding/json has already found valid, so
// it checks only what encoding/json does not.
type strictScanner struct {
	data []byte
	i    int
}

func (s *strictScanner) skipSpace() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

func (s *strictScanner) value(p *path) *Error {
	s.skipSpace()
	if s.i >= len(s.data) {
		return nil
	}
	switch s.data[s.i] {
	case '{':
		s.i++
		var seen map[string]bool
		for {
			s.skipSpace()
			if s.data[s.i] == '}' {
				s.i++
				return nil
			}
			if s.data[s.i] == ',' {
				s.i++
				s.skipSpace()
			}
			key, e := s.str(p, true)
			if e != nil {
				return e
			}
			kp := &path{parent: p, key: key}
			if seen[key] {
				return kp.errorf("duplicate key: a key may appear only once in an object")
			}
			if seen == nil {
				seen = map[string]bool{}
			}
			seen[key] = true
			s.skipSpace()
			s.i++ // ':'
			if e := s.value(kp); e != nil {
				return e
			}
		}
	case '[':
		s.i++
		for n := 0; ; n++ {
			s.skipSpace()
			if s.data[s.i] == ']' {
				s.i++
				return nil
			}
			if s.data[s.i] == ',' {
				s.i++
			}
			if e := s.value(&path{parent: p, index: n, isIndex: true}); e != nil {
				return e
			}
		}
	case '"':
		_, e := s.str(p, false)
		return e
	}
	// A number, true, false or null.
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ',', ']', '}', ' ', '\t', '\r', '\n':
			return nil
		}
		s.i++
	}
	return nil
}

// str checks the string at s.i, the value at p or (isKey) a key of the
// object at p, and returns it decoded.
func (s *strictScanner) str(p *path, isKey bool) (string, *Error) {
	start := s.i
	s.i++ // '"'
	escaped := false
	for {
		c := s.data[s.i]
		switch {
		case c == '"':
			s.i++
			raw := s.data[start:s.i]
			if !escaped {
				return string(raw[1 : len(raw)-1]), nil
			}
			var v string
			if err := json.Unmarshal(raw, &v); err != nil {
				return "", s.strError(p, isKey, raw, err.Error())
			}
			return v, nil
		case c == '\\':
			escaped = true
			if s.data[s.i+1] != 'u' {
				s.i += 2
				continue
			}
			r, _ := hex4(s.data[s.i+2 : s.i+6]) // valid: encoding/json checked
			s.i += 6
			switch {
			case 0xDC00 <= r && r < 0xE000:
				return "", s.strError(p, isKey, s.data[start:s.i], fmt.Sprintf(`holds an unpaired UTF-16 surrogate \u%04x`, r))
			case 0xD800 <= r && r < 0xDC00:
				next := s.data[s.i:]
				if len(next) < 6 || next[0] != '\\' || next[1] != 'u' {
					return "", s.strError(p, isKey, s.data[start:s.i], fmt.Sprintf(`holds an unpaired UTF-16 surrogate \u%04x`, r))
				}
				if lo, _ := hex4(next[2:6]); lo < 0xDC00 || lo >= 0xE000 {
					return "", s.strError(p, isKey, s.data[start:s.i], fmt.Sprintf(`holds an unpaired UTF-16 surrogate \u%04x`, r))
				}
				s.i += 6
			}
		case c < utf8.RuneSelf:
			s.i++
		default:
			r, size := utf8.DecodeRune(s.data[s.i:])
			if r == utf8.RuneError && size == 1 {
				return "", s.strError(p, isKey, s.data[start:s.i], fmt.Sprintf("is not valid UTF-8 (byte 0x%02x)", c))
			}
			s.i += size
		}
	}
}

// strError says what is wrong with the string that starts with prefix.
func (s *strictScanner) strError(p *path, isKey bool, prefix []byte, reason string) *Error {
	if !isKey {
		return p.errorf("string " + reason)
	}
	// The key can't be decoded: name it by what came before the fault.
	return p.errorf(fmt.Sprintf("key %s… %s", lossyQuote(prefix[1:]), reason))
}

// lossyQuote quotes the start of a raw key for an error message.
func lossyQuote(b []byte) string {
	if len(b) > 40 {
		b = b[:40]
	}
	return fmt.Sprintf("%q", b)
}
