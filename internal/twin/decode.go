package twin

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// This file is the fast path of UnmarshalJSON: one pass over the bytes that
// builds the twin's trees, $metadata and versions included, without
// encoding/json and its map[string]any. It takes the common case (a twin as
// MarshalJSON or IoT Hub writes it) and gives up (errSlow) on anything else:
// every error, and every input whose meaning the full decoder (unmarshalSlow)
// defines in a way this one does not reproduce exactly (duplicate top-level
// members, case-insensitive member names, $metadata before content, …).
// UnmarshalJSON then runs the full decoder, which gives the result or the
// error with its path. So the fast path never needs to be right about an
// error, only about a success: whatever it accepts, the full decoder accepts
// with the same twin (TestFastDecoderMatchesFull, FuzzDecodeTwinFast).

// errSlow means: leave this document to the full decoder.
var errSlow = errors.New("twin: not on the fast path")

// unsetVersion marks a desired node whose $lastUpdatedVersion is the
// section's $version, not known until the section has been read.
const unsetVersion = math.MinInt64

// maxSkipDepth bounds the nesting of members the decoder skips; deeper ones
// go to the full decoder.
const maxSkipDepth = 512

// snode is a node while decoding: members and leaf bytes are offsets into
// the decoder's buffers, turned into slices of three allocations at the end.
type snode struct {
	first, count int32 // members in fastDecoder.mems (an object)
	rawOff       int32 // leaf bytes in fastDecoder.leaf
	rawLen       int32 // < 0 for an object
	size         int32
	version      int64
	updated      string
}

type smem struct {
	koff, klen int32 // key bytes in fastDecoder.keys
	qlen       int32 // length of the quoted key
	node       int32
}

// akey is a member of an object inside an array while it is written.
type akey struct {
	koff, klen int32 // decoded key in fastDecoder.akeys
	start, end int32 // the member's canonical bytes in fastDecoder.leaf
}

type fastDecoder struct {
	data []byte
	i    int

	nodes   []snode
	mems    []smem   // members of finished objects, each object's contiguous
	stack   []smem   // members of objects being read
	keys    []byte   // content keys
	leaf    []byte   // canonical leaf JSON
	tmp     []byte   // a decoded string
	akeys   []byte   // keys of objects inside arrays
	astack  []akey   // their members
	seg     []byte   // reordering of one such object
	visited []bool   // $metadata members seen, per level
	times   []string // $lastUpdated values, interned
}

var decoders = sync.Pool{New: func() any { return new(fastDecoder) }}

// maxPooled bounds the buffers a pooled decoder keeps.
const maxPooled = 256 << 10

func (d *fastDecoder) reset(data []byte) {
	d.data, d.i = data, 0
	d.nodes, d.mems, d.stack = d.nodes[:0], d.mems[:0], d.stack[:0]
	d.keys, d.leaf, d.tmp, d.akeys, d.seg = d.keys[:0], d.leaf[:0], d.tmp[:0], d.akeys[:0], d.seg[:0]
	d.astack, d.visited = d.astack[:0], d.visited[:0]
	clear(d.times)
	d.times = d.times[:0]
}

func (d *fastDecoder) release() {
	d.data = nil
	if cap(d.leaf) > maxPooled || cap(d.keys) > maxPooled || cap(d.nodes) > maxPooled/32 {
		return
	}
	for i := range d.nodes {
		d.nodes[i].updated = ""
	}
	clear(d.times)
	decoders.Put(d)
}

// decodeFast decodes a twin document as UnmarshalJSON does, or returns
// errSlow.
func decodeFast(data []byte, t *Twin) error {
	if len(data) > 1<<30 {
		return errSlow // offsets are int32
	}
	d := decoders.Get().(*fastDecoder)
	d.reset(data)
	err := d.twin(t)
	d.release()
	return err
}

func (d *fastDecoder) ws() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\r', '\n':
			d.i++
		default:
			return
		}
	}
}

// peek skips white space and returns the next byte (0 at the end).
func (d *fastDecoder) peek() byte {
	d.ws()
	if d.i >= len(d.data) {
		return 0
	}
	return d.data[d.i]
}

func (d *fastDecoder) expect(c byte) error {
	if d.peek() != c {
		return errSlow
	}
	d.i++
	return nil
}

// next reads ',' (more members or elements: true) or end (false).
func (d *fastDecoder) next(end byte) (bool, error) {
	switch d.peek() {
	case ',':
		d.i++
		return true, nil
	case end:
		d.i++
		return false, nil
	}
	return false, errSlow
}

// literal reads true, false or null.
func (d *fastDecoder) literal(lit string) error {
	if !bytes.HasPrefix(d.data[d.i:], []byte(lit)) {
		return errSlow
	}
	d.i += len(lit)
	return nil
}

// isNull reads null if it is next.
func (d *fastDecoder) isNull() bool {
	if d.peek() == 'n' && d.literal("null") == nil {
		return true
	}
	return false
}

// number reads a JSON number and returns its text.
func (d *fastDecoder) number() ([]byte, error) {
	b, start := d.data, d.i
	i := d.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	default:
		return nil, errSlow
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return nil, errSlow
		}
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return nil, errSlow
		}
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	}
	d.i = i
	return b[start:i], nil
}

// integer reads a JSON number that must be an int64 written without
// fraction or exponent (what json.Number.Int64 and an int64 field accept).
func (d *fastDecoder) integer() (int64, error) {
	num, err := d.number()
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil {
		return 0, errSlow
	}
	return n, nil
}

// plain marks the bytes a string holds as they are: ASCII but control
// characters, '"' and '\\'.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// strASCII reads the string at d.i strictly (valid UTF-8, paired
// surrogates) and returns its content: raw is the text between the quotes
// when it holds no escape (escaped false), else the decoded string is in
// d.tmp; nonASCII says whether it holds a non-ASCII byte.
func (d *fastDecoder) strASCII() (raw []byte, escaped, nonASCII bool, err error) {
	b := d.data
	if d.i >= len(b) || b[d.i] != '"' {
		return nil, false, false, errSlow
	}
	start := d.i + 1
	i := start
	for {
		for i+4 <= len(b) && plain[b[i]] && plain[b[i+1]] && plain[b[i+2]] && plain[b[i+3]] {
			i += 4
		}
		for i < len(b) && plain[b[i]] {
			i++
		}
		if i >= len(b) {
			return nil, false, false, errSlow
		}
		switch c := b[i]; {
		case c == '"':
			d.i = i + 1
			return b[start:i], false, nonASCII, nil
		case c == '\\':
			d.tmp = append(d.tmp[:0], b[start:i]...)
			d.i = i
			return nil, true, true, d.escaped()
		case c < 0x20:
			return nil, false, false, errSlow
		default:
			nonASCII = true
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return nil, false, false, errSlow
			}
			i += size
		}
	}
}

// escaped decodes the rest of a string with escapes into d.tmp.
func (d *fastDecoder) escaped() error {
	b := d.data
	i := d.i
	for {
		if i >= len(b) {
			return errSlow
		}
		c := b[i]
		switch {
		case c == '"':
			d.i = i + 1
			return nil
		case c == '\\':
			if i+1 >= len(b) {
				return errSlow
			}
			switch b[i+1] {
			case '"', '\\', '/':
				d.tmp = append(d.tmp, b[i+1])
			case 'b':
				d.tmp = append(d.tmp, '\b')
			case 'f':
				d.tmp = append(d.tmp, '\f')
			case 'n':
				d.tmp = append(d.tmp, '\n')
			case 'r':
				d.tmp = append(d.tmp, '\r')
			case 't':
				d.tmp = append(d.tmp, '\t')
			case 'u':
				r, ok := hex4(b[i+2:])
				if !ok {
					return errSlow
				}
				i += 6
				switch {
				case utf16.IsSurrogate(r):
					if r >= 0xDC00 || i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
						return errSlow
					}
					lo, ok := hex4(b[i+2:])
					if !ok || lo < 0xDC00 || lo >= 0xE000 {
						return errSlow
					}
					i += 6
					d.tmp = utf8.AppendRune(d.tmp, utf16.DecodeRune(r, lo))
				default:
					d.tmp = utf8.AppendRune(d.tmp, r)
				}
				continue
			default:
				return errSlow
			}
			i += 2
		case c < 0x20:
			return errSlow
		case c < utf8.RuneSelf:
			d.tmp = append(d.tmp, c)
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return errSlow
			}
			d.tmp = append(d.tmp, b[i:i+size]...)
			i += size
		}
	}
}

// hex4 reads four hex digits; false if they are not.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		r <<= 4
		switch {
		case '0' <= c && c <= '9':
			r |= rune(c - '0')
		case 'a' <= c && c <= 'f':
			r |= rune(c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}

// decodedStr reads a string and returns its decoded bytes (valid until the
// next string is read).
func (d *fastDecoder) decodedStr() ([]byte, error) {
	raw, escaped, _, err := d.strASCII()
	if escaped {
		raw = d.tmp
	}
	return raw, err
}

// skip reads any JSON value, checking its syntax only (as encoding/json does
// for members it ignores).
func (d *fastDecoder) skip(depth int) error {
	if depth > maxSkipDepth {
		return errSlow
	}
	switch c := d.peek(); c {
	case '{':
		d.i++
		if d.peek() == '}' {
			d.i++
			return nil
		}
		for {
			d.ws()
			if err := d.skipString(); err != nil {
				return err
			}
			if err := d.expect(':'); err != nil {
				return err
			}
			if err := d.skip(depth + 1); err != nil {
				return err
			}
			if more, err := d.next('}'); err != nil || !more {
				return err
			}
		}
	case '[':
		d.i++
		if d.peek() == ']' {
			d.i++
			return nil
		}
		for {
			if err := d.skip(depth + 1); err != nil {
				return err
			}
			if more, err := d.next(']'); err != nil || !more {
				return err
			}
		}
	case '"':
		return d.skipString()
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	default:
		_, err := d.number()
		return err
	}
}

// skipString reads a string checking its syntax only: any byte but control
// characters, valid escapes.
func (d *fastDecoder) skipString() error {
	b := d.data
	if d.i >= len(b) || b[d.i] != '"' {
		return errSlow
	}
	for i := d.i + 1; i < len(b); {
		switch c := b[i]; {
		case c == '"':
			d.i = i + 1
			return nil
		case c == '\\':
			if i+1 >= len(b) {
				return errSlow
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if _, ok := hex4(b[i+2:]); !ok {
					return errSlow
				}
				i += 6
			default:
				return errSlow
			}
		case c < 0x20:
			return errSlow
		default:
			i++
		}
	}
	return errSlow
}

// The members of the twin document that UnmarshalJSON reads.
var twinFields = [...]string{"deviceId", "moduleId", "etag", "version", "status", "tags", "properties"}

// foldsTo reports whether key, not one of names, is one of them but for
// case (encoding/json matches member names case-insensitively), or is not
// ASCII (and might fold to one under Unicode's rules).
func foldsTo(key []byte, names []string) bool {
	for _, c := range key {
		if c >= utf8.RuneSelf {
			return true
		}
	}
	for _, n := range names {
		if len(n) == len(key) && bytes.EqualFold(key, []byte(n)) {
			return true
		}
	}
	return false
}

func (d *fastDecoder) twin(t *Twin) error {
	if err := d.expect('{'); err != nil {
		return err
	}
	var (
		w              Twin
		seen           [len(twinFields)]bool
		tags, des, rep int32 = -1, -1, -1
		dv, rv         int64 = 1, 1
	)
	if d.peek() == '}' {
		d.i++
	} else {
		for {
			d.ws()
			key, err := d.decodedStr()
			if err != nil {
				return err
			}
			f := -1
			for i, name := range twinFields {
				if string(key) == name {
					f = i
					break
				}
			}
			if f < 0 && foldsTo(key, twinFields[:]) {
				return errSlow
			}
			if f >= 0 {
				if seen[f] {
					return errSlow
				}
				seen[f] = true
			}
			if err := d.expect(':'); err != nil {
				return err
			}
			d.ws()
			switch f {
			case 0, 1, 2, 4: // deviceId, moduleId, etag, status
				if !d.isNull() {
					s, err := d.identityString()
					if err != nil {
						return err
					}
					switch f {
					case 0:
						w.DeviceID = s
					case 1:
						w.ModuleID = s
					case 2:
						w.ETag = s
					case 4:
						w.Status = s
					}
				}
			case 3: // version
				if !d.isNull() {
					if w.Version, err = d.integer(); err != nil {
						return err
					}
				}
			case 5: // tags
				if !d.isNull() {
					if tags, _, err = d.section(Tags); err != nil {
						return err
					}
				}
			case 6: // properties
				if !d.isNull() {
					if des, dv, rep, rv, err = d.properties(); err != nil {
						return err
					}
				}
			default:
				if err := d.skip(0); err != nil {
					return err
				}
			}
			if more, err := d.next('}'); err != nil {
				return err
			} else if !more {
				break
			}
		}
	}
	if d.ws(); d.i != len(d.data) {
		return errSlow // data after the document
	}
	nodes := d.finish()
	root := func(i int32) *node {
		if i < 0 {
			return newObject(nil, zeroTime, 1)
		}
		return &nodes[i]
	}
	w.tags, w.desired, w.reported = root(tags), root(des), root(rep)
	w.desiredVersion, w.reportedVersion = dv, rv
	if w.ETag == "" {
		w.ETag = ETag(w.Version)
	}
	*t = w
	return nil
}

// identityString reads a string member of the twin: deviceId and the like.
func (d *fastDecoder) identityString() (string, error) {
	raw, err := d.decodedStr()
	if err != nil {
		return "", err
	}
	switch string(raw) {
	case "enabled":
		return "enabled", nil
	case "disabled":
		return "disabled", nil
	}
	return string(raw), nil
}

// properties reads {"desired": …, "reported": …}.
func (d *fastDecoder) properties() (des int32, dv int64, rep int32, rv int64, err error) {
	des, rep, dv, rv = -1, -1, 1, 1
	if err = d.expect('{'); err != nil {
		return
	}
	if d.peek() == '}' {
		d.i++
		return
	}
	names := []string{"desired", "reported"}
	var seen [2]bool
	for {
		d.ws()
		var key []byte
		if key, err = d.decodedStr(); err != nil {
			return
		}
		f := slices.Index(names, string(key))
		if f < 0 && foldsTo(key, names) {
			err = errSlow
			return
		}
		if f >= 0 {
			if seen[f] {
				err = errSlow
				return
			}
			seen[f] = true
		}
		if err = d.expect(':'); err != nil {
			return
		}
		d.ws()
		switch {
		case f < 0:
			err = d.skip(1)
		case d.isNull():
		case f == 0:
			des, dv, err = d.section(Desired)
		default:
			rep, rv, err = d.section(Reported)
		}
		if err != nil {
			return
		}
		var more bool
		if more, err = d.next('}'); err != nil || !more {
			return
		}
	}
}

// section reads a section's object: content and, for desired and reported,
// $metadata and $version. It returns the root node and $version.
func (d *fastDecoder) section(s Section) (int32, int64, error) {
	if d.peek() != '{' {
		return 0, 0, errSlow
	}
	d.i++
	first := int32(len(d.nodes))
	withVersion := s == Desired
	defVersion := int64(0)
	if withVersion {
		defVersion = unsetVersion
	}
	version := int64(1)
	var versionSeen, metaSeen bool
	root := int32(-1)
	start := len(d.stack)
	if d.peek() == '}' {
		d.i++
	} else {
		for {
			d.ws()
			key, err := d.contentKey(s != Tags)
			if err != nil {
				return 0, 0, err
			}
			if err := d.expect(':'); err != nil {
				return 0, 0, err
			}
			d.ws()
			switch {
			case key.klen >= 0:
				if metaSeen {
					return 0, 0, errSlow // content after $metadata
				}
				if key.node, err = d.member(1, defVersion); err != nil {
					return 0, 0, err
				}
				d.stack = append(d.stack, key)
			case key.koff == keyVersion:
				if versionSeen {
					return 0, 0, errSlow
				}
				versionSeen = true
				if version, err = d.integer(); err != nil || version < 0 {
					return 0, 0, errSlow
				}
			default: // $metadata
				if metaSeen {
					return 0, 0, errSlow
				}
				metaSeen = true
				if root = d.object(start, zeroTime, defVersion); root < 0 {
					return 0, 0, errSlow // duplicate key
				}
				if err := d.meta(root, zeroTime, defVersion, withVersion); err != nil {
					return 0, 0, err
				}
			}
			more, err := d.next('}')
			if err != nil {
				return 0, 0, err
			}
			if !more {
				break
			}
		}
	}
	if root < 0 {
		root = d.object(start, zeroTime, defVersion)
		if root < 0 {
			return 0, 0, errSlow // duplicate key
		}
	}
	if int(d.nodes[root].size) > s.limit() {
		return 0, 0, errSlow
	}
	if withVersion {
		for i := first; i < int32(len(d.nodes)); i++ {
			if d.nodes[i].version == unsetVersion {
				d.nodes[i].version = version
			}
		}
	}
	return root, version, nil
}

// Special keys of a section's root, in smem.koff when smem.klen < 0.
const (
	keyVersion  = -1
	keyMetadata = -2
)

// contentKey reads a member key of content, which must be a valid twin key,
// into d.keys; at a section's root (special) it may also be $metadata or
// $version, returned with klen < 0.
func (d *fastDecoder) contentKey(special bool) (smem, error) {
	raw, err := d.decodedStr()
	if err != nil {
		return smem{}, err
	}
	if special && len(raw) > 0 && raw[0] == '$' {
		switch string(raw) {
		case "$version":
			return smem{koff: keyVersion, klen: -1}, nil
		case "$metadata":
			return smem{koff: keyMetadata, klen: -1}, nil
		}
		return smem{}, errSlow
	}
	qlen, ok := keyQuotedLen(raw)
	if !ok {
		return smem{}, errSlow
	}
	off := len(d.keys)
	d.keys = append(d.keys, raw...)
	return smem{koff: int32(off), klen: int32(len(raw)), qlen: int32(qlen)}, nil
}

// keyQuotedLen checks a key as checkKey does and returns its quoted length.
func keyQuotedLen(k []byte) (int, bool) {
	if len(k) == 0 || len(k) > MaxKeySize {
		return 0, false
	}
	n := 2
	for _, c := range k {
		switch {
		case c >= utf8.RuneSelf:
			s := string(k)
			return quotedLen(s), checkKey(s) == ""
		case c < 0x20 || c == 0x7f || c == '.' || c == '$' || c == ' ':
			return 0, false
		case c == '"' || c == '\\':
			n += 2
		default:
			n++
		}
	}
	return n, true
}

// member reads the value of a content member at depth dep: an object, or a
// leaf. It returns the node's index.
func (d *fastDecoder) member(dep int, defVersion int64) (int32, error) {
	switch d.peek() {
	case '{':
		if dep > MaxDepth {
			return 0, errSlow
		}
		d.i++
		start := len(d.stack)
		if d.peek() == '}' {
			d.i++
		} else {
			for {
				d.ws()
				key, err := d.contentKey(false)
				if err != nil {
					return 0, err
				}
				if err := d.expect(':'); err != nil {
					return 0, err
				}
				d.ws()
				if key.node, err = d.member(dep+1, defVersion); err != nil {
					return 0, err
				}
				d.stack = append(d.stack, key)
				more, err := d.next('}')
				if err != nil {
					return 0, err
				}
				if !more {
					break
				}
			}
		}
		n := d.object(start, zeroTime, defVersion)
		if n < 0 {
			return 0, errSlow
		}
		return n, nil
	case 'n', 0:
		return 0, errSlow // a null member, or the end
	}
	off := len(d.leaf)
	if err := d.leafValue(dep); err != nil {
		return 0, err
	}
	n := int32(len(d.leaf) - off)
	d.nodes = append(d.nodes, snode{rawOff: int32(off), rawLen: n, size: n, updated: zeroTime, version: defVersion})
	return int32(len(d.nodes) - 1), nil
}

// object makes the object whose members are d.stack[start:], sorted by key.
// It returns -1 if two members have the same key.
func (d *fastDecoder) object(start int, updated string, version int64) int32 {
	ms := d.stack[start:]
	key := func(m smem) []byte { return d.keys[m.koff : m.koff+m.klen] }
	cmp := func(a, b smem) int { return bytes.Compare(key(a), key(b)) }
	if !slices.IsSortedFunc(ms, cmp) {
		slices.SortFunc(ms, cmp)
	}
	size := int32(2)
	for i, m := range ms {
		if i > 0 {
			if bytes.Equal(key(ms[i-1]), key(m)) {
				return -1
			}
			size++
		}
		size += m.qlen + 1 + d.nodes[m.node].size
	}
	first := int32(len(d.mems))
	d.mems = append(d.mems, ms...)
	d.stack = d.stack[:start]
	d.nodes = append(d.nodes, snode{first: first, count: int32(len(ms)), rawLen: -1, size: size, updated: updated, version: version})
	return int32(len(d.nodes) - 1)
}

// leafValue writes the canonical JSON of the value at d.i, at depth dep, to
// d.leaf, enforcing the limits a stored twin obeys (appendLeaf's loadCheck).
func (d *fastDecoder) leafValue(dep int) error {
	if d.i >= len(d.data) {
		return errSlow
	}
	c := d.data[d.i]
	limit := MaxDepth + 1
	if c == '[' || c == '{' {
		limit = MaxDepth
	}
	if dep > limit {
		return errSlow
	}
	switch c {
	case '"':
		raw, escaped, nonASCII, err := d.strASCII()
		if err != nil {
			return err
		}
		if escaped {
			if len(d.tmp) > MaxStringSize {
				return errSlow
			}
			d.leaf = appendString(d.leaf, string(d.tmp))
			return nil
		}
		if len(raw) > MaxStringSize {
			return errSlow
		}
		if nonASCII && (bytes.Contains(raw, lineSep) || bytes.Contains(raw, paraSep)) {
			d.leaf = appendString(d.leaf, string(raw))
			return nil
		}
		d.leaf = append(d.leaf, '"')
		d.leaf = append(d.leaf, raw...)
		d.leaf = append(d.leaf, '"')
		return nil
	case '[':
		d.i++
		d.leaf = append(d.leaf, '[')
		if d.peek() == ']' {
			d.i++
			d.leaf = append(d.leaf, ']')
			return nil
		}
		for {
			if d.peek() == 0 {
				return errSlow
			}
			if err := d.leafValue(dep + 1); err != nil {
				return err
			}
			more, err := d.next(']')
			if err != nil {
				return err
			}
			if !more {
				d.leaf = append(d.leaf, ']')
				return nil
			}
			d.leaf = append(d.leaf, ',')
		}
	case '{':
		return d.arrayObject(dep)
	case 't':
		if err := d.literal("true"); err != nil {
			return err
		}
		d.leaf = append(d.leaf, "true"...)
		return nil
	case 'f':
		if err := d.literal("false"); err != nil {
			return err
		}
		d.leaf = append(d.leaf, "false"...)
		return nil
	case 'n':
		if err := d.literal("null"); err != nil {
			return err
		}
		d.leaf = append(d.leaf, "null"...)
		return nil
	}
	num, err := d.number()
	if err != nil {
		return err
	}
	d.leaf = append(d.leaf, num...)
	return nil
}

var lineSep, paraSep = []byte("\u2028"), []byte("\u2029")

// arrayObject writes an object inside an array: keys checked and sorted,
// members canonical.
func (d *fastDecoder) arrayObject(dep int) error {
	d.i++
	d.leaf = append(d.leaf, '{')
	if d.peek() == '}' {
		d.i++
		d.leaf = append(d.leaf, '}')
		return nil
	}
	start, akStart := len(d.astack), len(d.akeys)
	objStart := len(d.leaf)
	for {
		d.ws()
		key, err := d.decodedStr()
		if err != nil {
			return err
		}
		if _, ok := keyQuotedLen(key); !ok {
			return errSlow
		}
		koff := len(d.akeys)
		d.akeys = append(d.akeys, key...)
		mstart := len(d.leaf)
		d.leaf = appendString(d.leaf, string(key))
		d.leaf = append(d.leaf, ':')
		if err := d.expect(':'); err != nil {
			return err
		}
		if d.peek() == 0 {
			return errSlow
		}
		if err := d.leafValue(dep + 1); err != nil {
			return err
		}
		d.astack = append(d.astack, akey{koff: int32(koff), klen: int32(len(key)), start: int32(mstart), end: int32(len(d.leaf))})
		more, err := d.next('}')
		if err != nil {
			return err
		}
		if !more {
			break
		}
		d.leaf = append(d.leaf, ',')
	}
	ms := d.astack[start:]
	key := func(m akey) []byte { return d.akeys[m.koff : m.koff+m.klen] }
	cmp := func(a, b akey) int { return bytes.Compare(key(a), key(b)) }
	if !slices.IsSortedFunc(ms, cmp) {
		slices.SortFunc(ms, cmp)
		d.seg = append(d.seg[:0], d.leaf[objStart:]...)
		d.leaf = d.leaf[:objStart]
		for i, m := range ms {
			if i > 0 {
				d.leaf = append(d.leaf, ',')
			}
			d.leaf = append(d.leaf, d.seg[int(m.start)-objStart:int(m.end)-objStart]...)
		}
	}
	for i := 1; i < len(ms); i++ {
		if bytes.Equal(key(ms[i-1]), key(ms[i])) {
			return errSlow
		}
	}
	d.astack = d.astack[:start]
	d.akeys = d.akeys[:akStart]
	d.leaf = append(d.leaf, '}')
	return nil
}

// meta reads the $metadata object of the object node n, whose inherited
// $lastUpdated and $lastUpdatedVersion are updated and version, and sets
// the metadata of n and of its subtree.
func (d *fastDecoder) meta(n int32, updated string, version int64, withVersion bool) error {
	if err := d.expect('{'); err != nil {
		return err
	}
	obj := d.nodes[n].rawLen < 0
	vstart := len(d.visited)
	if obj {
		for range d.nodes[n].count {
			d.visited = append(d.visited, false)
		}
	}
	var updatedSeen, versionSeen, frozen bool
	freeze := func() {
		frozen = true
		d.nodes[n].updated, d.nodes[n].version = updated, version
	}
	if d.peek() == '}' {
		d.i++
	} else {
		for {
			d.ws()
			key, err := d.decodedStr()
			if err != nil {
				return err
			}
			if err := d.expect(':'); err != nil {
				return err
			}
			d.ws()
			switch {
			case len(key) > 0 && key[0] == '$':
				switch {
				case frozen:
					return errSlow // $lastUpdated after members
				case string(key) == "$lastUpdated" && !updatedSeen:
					updatedSeen = true
					s, err := d.decodedStr()
					if err != nil {
						return err
					}
					updated = d.intern(s)
				case string(key) == "$lastUpdatedVersion" && withVersion && !versionSeen:
					versionSeen = true
					if version, err = d.integer(); err != nil || version == unsetVersion {
						return errSlow
					}
				default:
					return errSlow
				}
			case !obj:
				return errSlow // metadata for a member of a leaf
			default:
				if !frozen {
					freeze()
				}
				m := d.nodes[n]
				ms := d.mems[m.first : m.first+m.count]
				i, found := slices.BinarySearchFunc(ms, key, func(m smem, k []byte) int {
					return bytes.Compare(d.keys[m.koff:m.koff+m.klen], k)
				})
				if !found || d.visited[vstart+i] {
					return errSlow
				}
				d.visited[vstart+i] = true
				if err := d.meta(ms[i].node, updated, version, withVersion); err != nil {
					return err
				}
			}
			more, err := d.next('}')
			if err != nil {
				return err
			}
			if !more {
				break
			}
		}
	}
	if !frozen {
		freeze()
	}
	if obj {
		m := d.nodes[n]
		for i, seen := range d.visited[vstart:] {
			if !seen {
				d.fill(d.mems[m.first+int32(i)].node, updated, version)
			}
		}
		d.visited = d.visited[:vstart]
	}
	return nil
}

// fill gives the subtree at n the metadata it inherits.
func (d *fastDecoder) fill(n int32, updated string, version int64) {
	d.nodes[n].updated, d.nodes[n].version = updated, version
	if m := d.nodes[n]; m.rawLen < 0 {
		for _, c := range d.mems[m.first : m.first+m.count] {
			d.fill(c.node, updated, version)
		}
	}
}

// intern returns s as a string, shared with earlier equal ones: a twin's
// nodes hold few distinct $lastUpdated values.
func (d *fastDecoder) intern(s []byte) string {
	for _, t := range d.times {
		if string(s) == t {
			return t
		}
	}
	if string(s) == zeroTime {
		return zeroTime
	}
	t := string(s)
	if len(d.times) < 16 {
		d.times = append(d.times, t)
	}
	return t
}

// finish turns the decoded nodes into the twin's: one slice of nodes, one
// of members, one leaf buffer and one string of keys.
func (d *fastDecoder) finish() []node {
	nodes := make([]node, len(d.nodes))
	mems := make([]member, len(d.mems))
	leaf := bytes.Clone(d.leaf)
	keys := string(d.keys)
	for i, m := range d.mems {
		mems[i] = member{key: keys[m.koff : m.koff+m.klen], klen: int(m.qlen), node: &nodes[m.node]}
	}
	for i, s := range d.nodes {
		n := &nodes[i]
		n.updated, n.version, n.size = s.updated, s.version, int(s.size)
		if s.rawLen < 0 {
			n.members = mems[s.first : s.first+s.count : s.first+s.count]
		} else {
			n.raw = leaf[s.rawOff : s.rawOff+s.rawLen : s.rawOff+s.rawLen]
		}
	}
	return nodes
}

// decodeValueFast decodes one strict JSON value as decodeAt does (numbers as
// json.Number), or returns errSlow, for decodeAt to say what is wrong.
func decodeValueFast(data []byte) (any, error) {
	d := decoders.Get().(*fastDecoder)
	d.reset(data)
	v, err := d.value(0)
	if err == nil {
		if d.ws(); d.i != len(d.data) {
			v, err = nil, errSlow
		}
	}
	d.release()
	return v, err
}

// value reads any JSON value strictly: duplicate keys, invalid UTF-8 and
// unpaired surrogates are errSlow, as is nesting past maxSkipDepth.
func (d *fastDecoder) value(depth int) (any, error) {
	if depth > maxSkipDepth {
		return nil, errSlow
	}
	switch c := d.peek(); c {
	case '{':
		d.i++
		m := map[string]any{}
		if d.peek() == '}' {
			d.i++
			return m, nil
		}
		for {
			d.ws()
			raw, err := d.decodedStr()
			if err != nil {
				return nil, err
			}
			if _, dup := m[string(raw)]; dup {
				return nil, errSlow
			}
			k := string(raw)
			if err := d.expect(':'); err != nil {
				return nil, err
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			m[k] = v
			if more, err := d.next('}'); err != nil {
				return nil, err
			} else if !more {
				return m, nil
			}
		}
	case '[':
		d.i++
		a := []any{}
		if d.peek() == ']' {
			d.i++
			return a, nil
		}
		for {
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
			if more, err := d.next(']'); err != nil {
				return nil, err
			} else if !more {
				return a, nil
			}
		}
	case '"':
		raw, err := d.decodedStr()
		if err != nil {
			return nil, err
		}
		return string(raw), nil
	case 't':
		return true, d.literal("true")
	case 'f':
		return false, d.literal("false")
	case 'n':
		return nil, d.literal("null")
	}
	num, err := d.number()
	if err != nil {
		return nil, err
	}
	return json.Number(num), nil
}

// checkFast reports whether data is one strict JSON value, as CheckJSON
// checks, without allocating; false means: ask checkJSONSlow.
func checkFast(data []byte) bool {
	d := decoders.Get().(*fastDecoder)
	d.reset(data)
	err := d.check(0)
	if err == nil {
		if d.ws(); d.i != len(d.data) {
			err = errSlow
		}
	}
	d.release()
	return err == nil
}

// check reads any JSON value strictly, as value does, keeping nothing.
func (d *fastDecoder) check(depth int) error {
	if depth > maxSkipDepth {
		return errSlow
	}
	switch d.peek() {
	case '{':
		d.i++
		if d.peek() == '}' {
			d.i++
			return nil
		}
		start, akStart := len(d.astack), len(d.akeys)
		for {
			d.ws()
			key, err := d.decodedStr()
			if err != nil {
				return err
			}
			d.astack = append(d.astack, akey{koff: int32(len(d.akeys)), klen: int32(len(key))})
			d.akeys = append(d.akeys, key...)
			if err := d.expect(':'); err != nil {
				return err
			}
			if err := d.check(depth + 1); err != nil {
				return err
			}
			more, err := d.next('}')
			if err != nil {
				return err
			}
			if !more {
				break
			}
		}
		ms := d.astack[start:]
		key := func(m akey) []byte { return d.akeys[m.koff : m.koff+m.klen] }
		if len(ms) <= 8 {
			for i := range ms {
				for j := range i {
					if bytes.Equal(key(ms[i]), key(ms[j])) {
						return errSlow
					}
				}
			}
		} else {
			slices.SortFunc(ms, func(a, b akey) int { return bytes.Compare(key(a), key(b)) })
			for i := 1; i < len(ms); i++ {
				if bytes.Equal(key(ms[i-1]), key(ms[i])) {
					return errSlow
				}
			}
		}
		d.astack, d.akeys = d.astack[:start], d.akeys[:akStart]
		return nil
	case '[':
		d.i++
		if d.peek() == ']' {
			d.i++
			return nil
		}
		for {
			if err := d.check(depth + 1); err != nil {
				return err
			}
			if more, err := d.next(']'); err != nil || !more {
				return err
			}
		}
	case '"':
		_, err := d.decodedStr()
		return err
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	}
	_, err := d.number()
	return err
}
