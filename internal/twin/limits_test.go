package twin

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// docOfSize returns a JSON object of exactly n bytes of compact JSON, made
// of string members of at most 4000 bytes each.
func docOfSize(t testing.TB, n int) []byte {
	t.Helper()
	var b strings.Builder
	b.WriteByte('{')
	remaining := n - 2
	for i := 0; remaining > 0; i++ {
		comma := 0
		if i > 0 {
			comma = 1
			b.WriteByte(',')
		}
		const overhead = 5 + 1 + 2 // "kNN" : ""
		l := remaining - comma - overhead
		if l > 4000 {
			l = 4000
			if rest := remaining - comma - overhead - l; rest > 0 && rest < overhead+1+1 {
				l -= overhead + 1 + 1 // leave room for one more member
			}
		}
		if l < 0 {
			t.Fatalf("docOfSize(%d): cannot fill", n)
		}
		fmt.Fprintf(&b, `"k%02d":"%s"`, i, strings.Repeat("x", l))
		remaining -= comma + overhead + l
	}
	b.WriteByte('}')
	if b.Len() != n {
		t.Fatalf("docOfSize(%d) made %d bytes", n, b.Len())
	}
	return []byte(b.String())
}

// nested returns {"k1":{"k2":…{"kN":leaf}…}}.
func nested(n int, leaf string) string {
	s := leaf
	for i := n; i >= 1; i-- {
		s = fmt.Sprintf(`{"k%d":%s}`, i, s)
	}
	return s
}

// nestedPath returns prefix.k1.k2…kN.
func nestedPath(prefix string, n int) string {
	for i := 1; i <= n; i++ {
		prefix += fmt.Sprintf(".k%d", i)
	}
	return prefix
}

// wantError checks that err is an *Error with the given path and reason and
// that the twin's JSON is still before.
func wantError(t *testing.T, tw *Twin, before string, err error, path, reason string) {
	t.Helper()
	var te *Error
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want *Error %s: %s", err, path, reason)
	}
	if te.Path != path || te.Reason != reason {
		t.Errorf("err = %q\nwant  %q", te.Error(), path+": "+reason)
	}
	if te.Error() != path+": "+reason {
		t.Errorf("Error() = %q", te.Error())
	}
	if after := marshal(t, tw); after != before {
		t.Errorf("failed write changed the twin")
	}
}

func TestDepthLimit(t *testing.T) {
	const over = "depth 11 exceeds 10 (at most 10 nested objects or arrays below the section)"
	for _, s := range []Section{Desired, Reported, Tags} {
		t.Run(string(s), func(t *testing.T) {
			tw := New("d", "m", t0)
			// IoT Hub's documented valid example: ten nested objects, then a property.
			mustPatch(t)(patchSection(tw, s, []byte(`{"one":{"two":{"three":{"four":{"five":{"six":{"seven":{"eight":{"nine":{"ten":{"property":"value"}}}}}}}}}}}`)))
			// A leaf at depth 11 (eleven keys from the section root) is fine.
			mustPatch(t)(patchSection(tw, s, []byte(nested(11, `1`))))
			// An empty object at depth 10 too.
			mustPatch(t)(patchSection(tw, s, []byte(nested(9, `{"e":{}}`))))
			// An array at depth 10 with leaves at depth 11; arrays at 9 and 10 with
			// leaves and an empty object inside.
			mustPatch(t)(patchSection(tw, s, []byte(nested(10, `[1,"x",null]`))))
			mustPatch(t)(patchSection(tw, s, []byte(nested(9, `[1,[2],{"x":1},{}]`))))
			// A null deletes the leaf at depth 11; another creates nothing.
			mustPatch(t)(patchSection(tw, s, []byte(nested(10, `{"k11":null}`))))
			if _, err := patchSection(tw, s, []byte(nested(10, `{"k11":null}`))); err != nil {
				t.Errorf("null at depth 11: %v", err)
			}
			before := marshal(t, tw)

			// An eleventh nested object, empty or not, is one too many.
			_, err := patchSection(tw, s, []byte(nested(11, `{}`)))
			wantError(t, tw, before, err, nestedPath(s.path(), 11), over)
			_, err = patchSection(tw, s, []byte(nested(10, `{"k11":{"k12":1}}`)))
			wantError(t, tw, before, err, nestedPath(s.path(), 11), over)
			_, err = patchSection(tw, s, []byte(nested(10, `[[1]]`)))
			wantError(t, tw, before, err, nestedPath(s.path(), 10)+"[0]", over)
			_, err = patchSection(tw, s, []byte(nested(10, `[{"x":1}]`)))
			wantError(t, tw, before, err, nestedPath(s.path(), 10)+"[0]", over)
			_, err = patchSection(tw, s, []byte(nested(9, `[[[1]]]`)))
			wantError(t, tw, before, err, nestedPath(s.path(), 9)+"[0][0]", over)
			_, err = patchSection(tw, s, []byte(nested(30, `1`)))
			wantError(t, tw, before, err, nestedPath(s.path(), 11), over)
		})
	}
	// Replace and Apply check depth too.
	tw := New("d", "m", t0)
	before := marshal(t, tw)
	_, err := tw.ReplaceDesired([]byte(nested(12, `1`)), t1)
	wantError(t, tw, before, err, nestedPath("properties.desired", 11), over)
	_, err = tw.Apply([]byte(`{"tags":`+nested(12, `"x"`)+`}`), t1, false)
	wantError(t, tw, before, err, nestedPath("tags", 11), over)

	// A stored twin with a value at depth 11 reads back.
	tw = New("d", "m", t0)
	mustPatch(t)(tw.PatchDesired([]byte(nested(11, `1`)), t1))
	var back Twin
	if err := back.UnmarshalJSON([]byte(marshal(t, tw))); err != nil {
		t.Fatalf("read back a twin with a leaf at depth 11: %v", err)
	}
}

func TestNumberLimits(t *testing.T) {
	for _, s := range []Section{Desired, Reported, Tags} {
		t.Run(string(s), func(t *testing.T) {
			tw := New("d", "m", t0)
			for _, ok := range []string{"4503599627370495", "-4503599627370495", "0", "-0", "1.5", "1e308", "-1.7976931348623157e308", "1e-400", "12345678901234567890.0"} {
				if _, err := patchSection(tw, s, []byte(`{"n":`+ok+`}`)); err != nil {
					t.Errorf("%s refused: %v", ok, err)
				}
			}
			before := marshal(t, tw)
			for _, c := range []struct{ num, reason string }{
				{"4503599627370496", "integer 4503599627370496 is out of range (at most ±4503599627370495, as IoT Hub): write it as a string"},
				{"-4503599627370496", "integer -4503599627370496 is out of range (at most ±4503599627370495, as IoT Hub): write it as a string"},
				{"12345678901234567890", "integer 12345678901234567890 is out of range (at most ±4503599627370495, as IoT Hub): write it as a string"},
				{"1e400", "number 1e400 is not finite (beyond ±1.7976931348623157e+308): write a smaller number, or a string"},
				{"-1E400", "number -1E400 is not finite (beyond ±1.7976931348623157e+308): write a smaller number, or a string"},
			} {
				_, err := patchSection(tw, s, []byte(`{"a":{"b":[1,`+c.num+`]}}`))
				wantError(t, tw, before, err, s.path()+".a.b[1]", c.reason)
			}
		})
	}
}

func TestSizeLimits(t *testing.T) {
	for _, c := range []struct {
		s     Section
		limit int
	}{{Desired, 32 * 1024}, {Reported, 32 * 1024}, {Tags, 8 * 1024}} {
		t.Run(string(c.s), func(t *testing.T) {
			tw := New("d", "m", t0)
			mustPatch(t)(patchSection(tw, c.s, docOfSize(t, c.limit)))
			if got := len(content(tw, c.s)); got != c.limit {
				t.Fatalf("content is %d bytes, want %d", got, c.limit)
			}
			before := marshal(t, tw)
			// One more byte in an existing value.
			_, err := patchSection(tw, c.s, []byte(`{"k00":"`+strings.Repeat("x", 4001)+`"}`))
			wantError(t, tw, before, err, c.s.path(), fmt.Sprintf("size %d bytes exceeds %d", c.limit+1, c.limit))
			// Deleting makes room again.
			mustPatch(t)(patchSection(tw, c.s, []byte(`{"k00":null}`)))

			tw = New("d", "m", t0)
			before = marshal(t, tw)
			_, err = patchSection(tw, c.s, docOfSize(t, c.limit+1))
			wantError(t, tw, before, err, c.s.path(), fmt.Sprintf("size %d bytes exceeds %d", c.limit+1, c.limit))
		})
	}
	// Sizes count escaped JSON: "\n" is 2 bytes, "<" is 1 (no HTML escaping).
	tw := New("d", "m", t0)
	mustPatch(t)(tw.PatchTags([]byte(`{"a":"\n<"}`), t1))
	if got := tw.tags.size; got != len(`{"a":"\n<"}`) {
		t.Errorf("size = %d", got)
	}
	// Metadata and $version do not count.
	tw = New("d", "m", t0)
	mustPatch(t)(tw.ReplaceDesired(docOfSize(t, MaxDesiredSize), t1))
	if len(tw.SectionJSON(Desired)) <= MaxDesiredSize {
		t.Error("section with metadata is not larger than the content")
	}
}

func TestStringLimit(t *testing.T) {
	tw := New("d", "m", t0)
	mustPatch(t)(tw.PatchDesired([]byte(`{"s":"`+strings.Repeat("x", 4096)+`"}`), t1))
	mustPatch(t)(tw.PatchDesired([]byte(`{"s":"`+strings.Repeat("é", 2048)+`"}`), t1))  // 4096 bytes
	mustPatch(t)(tw.PatchDesired([]byte(`{"s":"`+strings.Repeat(`\n`, 4096)+`"}`), t1)) // 4096 bytes decoded
	before := marshal(t, tw)
	_, err := tw.PatchDesired([]byte(`{"s":"`+strings.Repeat("x", 4097)+`"}`), t2)
	wantError(t, tw, before, err, "properties.desired.s", "string length 4097 bytes exceeds 4096")
	_, err = tw.PatchDesired([]byte(`{"a":{"s":"`+strings.Repeat("é", 2049)+`"}}`), t2)
	wantError(t, tw, before, err, "properties.desired.a.s", "string length 4098 bytes exceeds 4096")
	_, err = tw.PatchReported([]byte(`{"a":["ok",{"b":"`+strings.Repeat("x", 4097)+`"}]}`), t2)
	wantError(t, tw, before, err, "properties.reported.a[1].b", "string length 4097 bytes exceeds 4096")
	_, err = tw.PatchTags([]byte(`{"t":"`+strings.Repeat("x", 4097)+`"}`), t2)
	wantError(t, tw, before, err, "tags.t", "string length 4097 bytes exceeds 4096")
}

func TestKeyRules(t *testing.T) {
	tw := New("d", "m", t0)
	key1024 := strings.Repeat("k", 1024)
	mustPatch(t)(tw.PatchDesired([]byte(`{"`+key1024+`":1}`), t1))
	mustPatch(t)(tw.PatchDesired([]byte(`{"a-b_c:d@e#f(g)+h%i*j?k!l,m=n'o":1,"température":{"\u00a0nbsp":"ok"},"a/b\\c[d]\"e":1}`), t1))
	before := marshal(t, tw)

	key1025 := strings.Repeat("k", 1025)
	_, err := tw.PatchDesired([]byte(`{"`+key1025+`":1}`), t2)
	wantError(t, tw, before, err, `properties.desired["`+key1025+`"]`, "key length 1025 bytes exceeds 1024")
	// A key of 1025 bytes made of multi-byte characters.
	keyMB := strings.Repeat("é", 512) + "k"
	_, err = tw.PatchDesired([]byte(`{"a":{"`+keyMB+`":1}}`), t2)
	wantError(t, tw, before, err, `properties.desired.a["`+keyMB+`"]`, "key length 1025 bytes exceeds 1024")

	cases := []struct{ key, jsonKey, reason string }{
		{"", "", "empty key"},
		{"a.b", "a.b", "key must not contain '.'"},
		{".", ".", "key must not contain '.'"},
		{"a$b", "a$b", "key must not contain '$'"},
		{"$version", "$version", "key must not start with '$' ($metadata, $version and other $ names are read-only)"},
		{"$metadata", "$metadata", "key must not start with '$' ($metadata, $version and other $ names are read-only)"},
		{"a b", "a b", "key must not contain a space"},
		{"a\x00", `a\u0000`, "key must not contain control character U+0000"},
		{"a\t", `a\t`, "key must not contain control character U+0009"},
		{"a\x1f", `a\u001f`, "key must not contain control character U+001F"},
		{"a\x7f", "a\x7f", "key must not contain control character U+007F"},
		{"a\u0080", `a\u0080`, "key must not contain control character U+0080"},
		{"a\u009f", `a\u009f`, "key must not contain control character U+009F"},
	}
	for _, c := range cases {
		p := fmt.Sprintf("[%q]", c.key)
		for _, w := range []struct {
			patch, path string
			do          func([]byte) (bool, error)
		}{
			{`{"` + c.jsonKey + `":1}`, "properties.desired" + p, func(b []byte) (bool, error) { return tw.PatchDesired(b, t2) }},
			{`{"x":{"` + c.jsonKey + `":null}}`, "properties.reported.x" + p, func(b []byte) (bool, error) { return tw.PatchReported(b, t2) }},
			{`{"x":[{"` + c.jsonKey + `":1}]}`, "tags.x[0]" + p, func(b []byte) (bool, error) { return tw.PatchTags(b, t2) }},
			{`{"x":{"` + c.jsonKey + `":{}}}`, "properties.desired.x" + p, func(b []byte) (bool, error) { return tw.ReplaceDesired(b, t2) }},
		} {
			_, err := w.do([]byte(w.patch))
			wantError(t, tw, before, err, w.path, c.reason)
		}
	}
}
