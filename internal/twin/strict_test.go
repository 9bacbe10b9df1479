package twin

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestStrictJSONIsRefusedWithItsPath(t *testing.T) {
	for _, tc := range []struct {
		body, path, reason string
	}{
		{`{"properties":{"desired":{"a":"x` + "\xff" + `y"}}}`, "properties.desired.a", "string is not valid UTF-8 (byte 0xff)"},
		{`{"properties":{"desired":{"a":{"b` + "\xc3" + `":1}}}}`, "properties.desired.a", `key "b"… is not valid UTF-8 (byte 0xc3)`},
		{`{"tags":{"t":["ok","` + "\xed\xa0\x80" + `"]}}`, "tags.t[1]", "string is not valid UTF-8 (byte 0xed)"},
		{`{"properties":{"desired":{"a":"\ud800"}}}`, "properties.desired.a", `string holds an unpaired UTF-16 surrogate \ud800`},
		{`{"properties":{"desired":{"a":"\ud800\u0041"}}}`, "properties.desired.a", `unpaired UTF-16 surrogate \ud800`},
		{`{"properties":{"desired":{"a":"x\uDC00"}}}`, "properties.desired.a", `unpaired UTF-16 surrogate \udc00`},
		{`{"properties":{"desired":{"a":1,"b":2,"a":3}}}`, "properties.desired.a", "duplicate key"},
		{`{"properties":{"desired":{"a":1,"\u0061":3}}}`, "properties.desired.a", "duplicate key"},
		{`{"tags":{"x":{"y":[{"z":1,"z":1}]}}}`, "tags.x.y[0].z", "duplicate key"},
		{`{"tags":{},"tags":{"t":1}}`, "tags", "duplicate key"},
		// Past 8 keys the fast checker sorts them: a repeat before, at and after the switch.
		{`{"tags":{"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k1":9}}`, "tags.k1", "duplicate key"},
		{`{"tags":{"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k8":10}}`, "tags.k8", "duplicate key"},
		{`{"tags":{"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k9":11}}`, "tags.k9", "duplicate key"},
		{`{"properties":{"desired":{}},"properties":{"desired":{"a":1}}}`, "properties", "duplicate key"},
	} {
		tw := New("d", "m", t0)
		before := marshal(t, tw)
		_, err := tw.Apply([]byte(tc.body), t1, false)
		var te *Error
		if !errors.As(err, &te) || te.Path != tc.path || !strings.Contains(te.Reason, tc.reason) {
			t.Errorf("Apply(%q) = %v; want %s: …%s…", tc.body, err, tc.path, tc.reason)
			continue
		}
		if marshal(t, tw) != before {
			t.Errorf("Apply(%q) failed but changed the twin", tc.body)
		}
		if err := CheckJSON([]byte(tc.body)); err == nil || err.Error() != te.Error() {
			t.Errorf("CheckJSON(%q) = %v, want %v", tc.body, err, te)
		}
	}
	// The section writers name the section.
	tw := New("d", "m", t0)
	if _, err := tw.PatchReported([]byte(`{"r":{"s":1,"s":2}}`), t1); err == nil || err.Error() != "properties.reported.r.s: duplicate key: a key may appear only once in an object" {
		t.Errorf("PatchReported with a duplicate key: %v", err)
	}
	if _, err := MergePatch([]byte(`{}`), []byte(`{"a":"`+"\x80"+`"}`)); err == nil || !strings.HasPrefix(err.Error(), "patch.a: string is not valid UTF-8") {
		t.Errorf("MergePatch with invalid UTF-8: %v", err)
	}
	if _, err := Diff([]byte(`{}`), []byte(`{"a":1,"a":1}`)); err == nil || !strings.HasPrefix(err.Error(), "to.a: duplicate key") {
		t.Errorf("Diff with a duplicate key: %v", err)
	}
	if err := CheckJSON([]byte(`{"a":`)); err == nil || !strings.Contains(err.Error(), "invalid JSON") {
		t.Errorf("CheckJSON of invalid JSON: %v", err)
	}
}

func TestStrictJSONAcceptsWhatIsValid(t *testing.T) {
	for _, body := range []string{
		`{"properties":{"desired":{"emoji":"😀","pair":"\ud83d\ude00","esc":"\"\\\/\b\f\n\r\t\u00e9","k\u00e9y":1}}}`,
		`{"tags":{"a":{"x":1},"b":{"x":1}},"properties":{"desired":{"a":[{"x":1},{"x":2}],"n":-1.5e3,"t":true,"f":false}}}`,
		` { "tags" : { "sp" : [ 1 , "two" , [ ] , { } ] } } `,
	} {
		tw := New("d", "m", t0)
		if _, err := tw.Apply([]byte(body), t1, false); err != nil {
			t.Errorf("Apply(%s): %v", body, err)
		}
		if err := CheckJSON([]byte(body)); err != nil {
			t.Errorf("CheckJSON(%s): %v", body, err)
		}
	}
	tw := New("d", "m", t0)
	tw.PatchDesired([]byte(`{"pair":"\ud83d\ude00"}`), t1)
	if got := tw.Desired()["pair"]; got != "😀" {
		t.Errorf("a surrogate pair decoded to %q", got)
	}
}

// FuzzCheckJSON checks CheckJSON against encoding/json's token stream: it
// never panics, what it accepts is valid UTF-8 without duplicate keys, and
// it accepts valid UTF-8 without escapes or duplicate keys.
func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1,"a":2}`, `{"a":{"b":[1,{"c":"d"}]}}`, `"\ud800"`, "\"\xff\"", `{"\u0061":1,"a":2}`, `[1,"x",null,true]`, `{"a":"\ud83d\ude00"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := CheckJSON(data)
		if !json.Valid(data) {
			if err == nil {
				t.Fatalf("CheckJSON(%q) accepted invalid JSON", data)
			}
			return
		}
		var te *Error
		if err != nil && !errors.As(err, &te) {
			t.Fatalf("error %v is %T, want *Error", err, err)
		}
		dups := hasDuplicateKeys(t, data)
		if err == nil && (!utf8.Valid(data) || dups) {
			t.Fatalf("CheckJSON(%q) accepted invalid UTF-8 or a duplicate key", data)
		}
		if err != nil && utf8.Valid(data) && !dups && !strings.Contains(string(data), `\u`) {
			t.Fatalf("CheckJSON(%q) = %v for strict JSON", data, err)
		}
	})
}

// hasDuplicateKeys walks data's tokens with encoding/json.
func hasDuplicateKeys(t *testing.T, data []byte) bool {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	type frame struct {
		obj    bool
		seen   map[string]bool
		expect bool // the next string token is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if s, ok := tok.(string); ok && top != nil && top.obj && top.expect {
			if top.seen[s] {
				return true
			}
			top.seen[s] = true
			top.expect = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{obj: true, seen: map[string]bool{}, expect: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].obj {
			stack[len(stack)-1].expect = true
		}
	}
}
