package twin

import (
	"errors"
	"testing"
)

// rfc7386Cases are the test cases of RFC 7386 Appendix A.
var rfc7386Cases = []struct {
	target, patch, result string
}{
	{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
	{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
	{`{"a":"b"}`, `{"a":null}`, `{}`},
	{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
	{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
	{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
	{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
	{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
	{`["a","b"]`, `["c","d"]`, `["c","d"]`},
	{`{"a":"b"}`, `["c"]`, `["c"]`},
	{`{"a":"foo"}`, `null`, `null`},
	{`{"a":"foo"}`, `"bar"`, `"bar"`},
	{`{"e":null}`, `{"a":1}`, `{"e":null,"a":1}`},
	{`[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
	{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
}

func TestMergePatchRFC7386(t *testing.T) {
	if len(rfc7386Cases) != 15 {
		t.Fatalf("want the 15 cases of RFC 7386 Appendix A, have %d", len(rfc7386Cases))
	}
	for i, c := range rfc7386Cases {
		got, err := MergePatch([]byte(c.target), []byte(c.patch))
		if err != nil {
			t.Errorf("case %d: MergePatch(%s, %s): %v", i+1, c.target, c.patch, err)
			continue
		}
		if want := canon(t, c.result); string(got) != want {
			t.Errorf("case %d: MergePatch(%s, %s) = %s, want %s", i+1, c.target, c.patch, got, want)
		}
	}
}

// TestSectionRFC7386 runs the Appendix A cases against each twin section:
// cases whose target, patch and result are objects (and whose target holds
// no null, which a twin cannot) must give the RFC's result; a non-object
// patch must be refused, leaving the twin unchanged.
func TestSectionRFC7386(t *testing.T) {
	for _, s := range []Section{Desired, Reported, Tags} {
		for i, c := range rfc7386Cases {
			tw := New("dev", "mod", t0)
			target := decodeT(t, c.target)
			if tm, ok := target.(map[string]any); !ok || hasNull(tm) {
				continue // not a valid twin section; covered by TestMergePatchRFC7386
			}
			// Build the target with a merge patch onto the empty section.
			if _, err := patchSection(tw, s, []byte(c.target)); err != nil {
				t.Fatalf("%s case %d: set target: %v", s, i+1, err)
			}
			before := marshal(t, tw)
			changed, err := patchSection(tw, s, []byte(c.patch))
			if _, isObj := decodeT(t, c.patch).(map[string]any); !isObj {
				var te *Error
				if !errors.As(err, &te) || te.Path != s.path() {
					t.Errorf("%s case %d: patch %s: err = %v, want *Error at %s", s, i+1, c.patch, err, s.path())
				}
				if after := marshal(t, tw); after != before {
					t.Errorf("%s case %d: failed patch changed the twin", s, i+1)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s case %d: patch %s: %v", s, i+1, c.patch, err)
				continue
			}
			if got, want := string(content(tw, s)), canon(t, c.result); got != want {
				t.Errorf("%s case %d: %s + %s = %s, want %s", s, i+1, c.target, c.patch, got, want)
			}
			if wantChanged := canon(t, c.target) != canon(t, c.result); changed != wantChanged {
				t.Errorf("%s case %d: changed = %v, want %v", s, i+1, changed, wantChanged)
			}
		}
	}
}

func hasNull(m map[string]any) bool {
	for _, v := range m {
		if v == nil {
			return true
		}
		if sub, ok := v.(map[string]any); ok && hasNull(sub) {
			return true
		}
	}
	return false
}

func TestDiff(t *testing.T) {
	cases := []struct{ from, to, patch string }{
		{`{}`, `{}`, `{}`},
		{`{"a":1}`, `{"a":1}`, `{}`},
		{`{"a":1}`, `{"a":2}`, `{"a":2}`},
		{`{"a":1,"b":2}`, `{"b":2}`, `{"a":null}`},
		{`{"a":{"b":1,"c":2}}`, `{"a":{"b":1,"c":3,"d":4}}`, `{"a":{"c":3,"d":4}}`},
		{`{"a":{"b":1}}`, `{"a":[1]}`, `{"a":[1]}`},
		{`{"a":[1,2]}`, `{"a":[1,2]}`, `{}`},
		{`{"a":[1,2]}`, `{"a":[2,1]}`, `{"a":[2,1]}`},
		{`{"a":1}`, `{"a":{"b":1}}`, `{"a":{"b":1}}`},
		{`{"a":1.0}`, `{"a":1}`, `{"a":1}`},
		{`[1]`, `{"a":1}`, `{"a":1}`},
		{`{"a":1}`, `"x"`, `"x"`},
	}
	for _, c := range cases {
		got, err := Diff([]byte(c.from), []byte(c.to))
		if err != nil {
			t.Errorf("Diff(%s, %s): %v", c.from, c.to, err)
			continue
		}
		if want := canon(t, c.patch); string(got) != want {
			t.Errorf("Diff(%s, %s) = %s, want %s", c.from, c.to, got, want)
		}
		merged, err := MergePatch([]byte(c.from), got)
		if err != nil {
			t.Fatal(err)
		}
		if want := canon(t, c.to); string(merged) != want {
			t.Errorf("MergePatch(%s, Diff) = %s, want %s", c.from, merged, want)
		}
	}
	if _, err := Diff([]byte(`{`), []byte(`{}`)); err == nil {
		t.Error("Diff of invalid JSON: no error")
	}
}
