package twin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// op is one write FuzzPatch can make.
type op struct {
	name    string
	section Section // the section whose content the reference model predicts
	replace bool
	do      func(tw *Twin, b []byte) (bool, error)
}

var fuzzOps = []op{
	{"PatchDesired", Desired, false, func(tw *Twin, b []byte) (bool, error) { return tw.PatchDesired(b, t2) }},
	{"PatchReported", Reported, false, func(tw *Twin, b []byte) (bool, error) { return tw.PatchReported(b, t2) }},
	{"PatchTags", Tags, false, func(tw *Twin, b []byte) (bool, error) { return tw.PatchTags(b, t2) }},
	{"ReplaceDesired", Desired, true, func(tw *Twin, b []byte) (bool, error) { return tw.ReplaceDesired(b, t2) }},
	{"ReplaceTags", Tags, true, func(tw *Twin, b []byte) (bool, error) { return tw.ReplaceTags(b, t2) }},
	{"Apply", "", false, func(tw *Twin, b []byte) (bool, error) { return tw.Apply(b, t2, true) }},
	{"Replace", "", true, func(tw *Twin, b []byte) (bool, error) { return tw.Replace(b, t2) }},
}

func FuzzPatch(f *testing.F) {
	seeds := []struct {
		op          uint8
		base, patch string
	}{
		{0, `{}`, `{"interval":5}`},
		{0, `{"a":{"b":1,"c":[1,2]}}`, `{"a":{"b":null,"c":[3],"d":{"e":"f"}}}`},
		{0, `{"a":{"b":{"c":1}},"x":"y"}`, `{"a":{"b":null},"x":null}`},
		{0, `{"a":1}`, `{"a":1.0,"b":12345678901234567890}`},
		{0, `{}`, `{"a.b":1}`},
		{0, `{}`, `{"$version":3}`},
		{0, `{}`, `{"a":{"b c":1}}`},
		{0, `{}`, `{"a":[{"$x":1},null,[[]]]}`},
		{0, `{}`, `{"k1":{"k2":{"k3":{"k4":{"k5":{"k6":{"k7":{"k8":{"k9":{"k10":1}}}}}}}}}}`},
		{0, `{}`, `{"k1":{"k2":{"k3":{"k4":{"k5":{"k6":{"k7":{"k8":{"k9":{"k10":{"k11":1}}}}}}}}}}}`},
		{0, `{}`, `{"a":{"bb":{"ccc":null}}}`},
		{1, `{"status":"running"}`, `{"status":"stopped","restartCount":1}`},
		{1, `{}`, `{"s":"\u0000\u2028<>&\"\\é"}`},
		{2, `{"site":"a"}`, `{"site":null,"floor":{"n":2}}`},
		{3, `{"a":1,"b":{"c":2}}`, `{"b":{"c":2},"d":null}`},
		{4, `{"t":1}`, `{"u":[true,false]}`},
		{5, `{"a":1}`, `{"tags":{"t":1},"properties":{"desired":{"a":2},"reported":{"r":1}}}`},
		{5, `{}`, `{"tags":{"t":1},"properties":{"desired":{"a.b":2}}}`},
		{5, `{}`, `{"deviceId":"x","etag":"y","properties":{}}`},
		{6, `{"a":1}`, `{"tags":{"t":1},"properties":{"desired":{"a":1}}}`},
		{6, `{"a":1}`, `{}`},
		{0, `{}`, `[1,2]`},
		{0, `{}`, `null`},
		{0, `{}`, `{"a":`},
		{0, `{}`, `{"a":1,"a":2}`},
		{0, `{}`, "{\"a\":\"\xff\"}"},
		{5, `{}`, `{"properties":{"desired":{"s":"\ud800"}}}`},
	}
	for _, s := range seeds {
		f.Add(s.op, []byte(s.base), []byte(s.patch))
	}
	f.Fuzz(func(t *testing.T, opIndex uint8, base, patch []byte) {
		o := fuzzOps[int(opIndex)%len(fuzzOps)]
		tw := New("dev", "mod", t0)
		// Give every section some starting content (invalid bases are skipped).
		tw.PatchDesired(base, t1)
		tw.PatchReported(base, t1)
		tw.PatchTags(base, t1)
		checkTwin(t, tw, true)

		before := marshal(t, tw)
		old := tw.Clone()
		changed, err := o.do(tw, patch)
		after := marshal(t, tw)
		if err != nil {
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("%s: error %v is %T, want *Error", o.name, err, err)
			}
			if changed || after != before {
				t.Fatalf("%s(%s) failed (%v) but changed the twin", o.name, patch, err)
			}
			return
		}
		checkTwin(t, tw, true)

		// Versions never go backwards and move by one per write.
		if changed {
			if tw.Version != old.Version+1 {
				t.Fatalf("version %d -> %d on a change", old.Version, tw.Version)
			}
		} else if after != before {
			t.Fatalf("%s(%s): changed = false but the twin changed", o.name, patch)
		}
		for _, s := range []Section{Desired, Reported, Tags} {
			contentChanged := !bytes.Equal(content(old, s), content(tw, s))
			if contentChanged && !changed {
				t.Fatalf("%s content changed but changed = false", s)
			}
			var ov, nv int64
			switch s {
			case Desired:
				ov, nv = old.DesiredVersion(), tw.DesiredVersion()
			case Reported:
				ov, nv = old.ReportedVersion(), tw.ReportedVersion()
			default:
				continue
			}
			want := ov
			if contentChanged {
				want++
			}
			if nv != want {
				t.Fatalf("%s $version %d -> %d, content changed %v", s, ov, nv, contentChanged)
			}
		}
		if changed && bytes.Equal(old.DesiredJSON(), tw.DesiredJSON()) &&
			bytes.Equal(old.ReportedJSON(), tw.ReportedJSON()) && bytes.Equal(old.TagsJSON(), tw.TagsJSON()) {
			t.Fatalf("changed = true but no content changed")
		}

		// The result is what the plain RFC 7386 algorithm gives.
		if o.section != "" {
			from := content(old, o.section)
			if o.replace {
				from = []byte("{}")
			}
			want, err := MergePatch(from, patch)
			if err != nil {
				t.Fatalf("reference merge: %v", err)
			}
			if got := content(tw, o.section); !bytes.Equal(got, want) {
				t.Fatalf("%s: %s + %s = %s, reference gives %s", o.name, from, patch, got, want)
			}
		}

		if o.section == "" {
			// Apply and Replace: each part as the reference algorithm gives it.
			body := decodeT(t, string(patch)).(map[string]any)
			props, _ := body["properties"].(map[string]any)
			parts := map[Section]any{Tags: body["tags"], Desired: props["desired"], Reported: props["reported"]}
			for s, part := range parts {
				from := content(old, s)
				if o.replace && s != Reported {
					from = []byte("{}")
					if part == nil {
						part = map[string]any{}
					}
				}
				if part == nil {
					part = map[string]any{}
				}
				pb, err := appendLeaf(nil, part, nil, 0, noCheck)
				if err != nil {
					t.Fatal(err)
				}
				want, err := MergePatch(from, pb)
				if err != nil {
					t.Fatalf("reference merge: %v", err)
				}
				if got := content(tw, s); !bytes.Equal(got, want) {
					t.Fatalf("%s %s: %s + %s = %s, reference gives %s", o.name, s, from, pb, got, want)
				}
			}
		}

		// Applying the same write again changes nothing.
		changed2, err := o.do(tw, patch)
		if err != nil || changed2 {
			t.Fatalf("%s again: changed = %v, err = %v", o.name, changed2, err)
		}
		if again := marshal(t, tw); again != after {
			t.Fatalf("%s again changed the twin", o.name)
		}

		// MarshalJSON → UnmarshalJSON → MarshalJSON is stable.
		var back Twin
		if err := back.UnmarshalJSON([]byte(after)); err != nil {
			t.Fatalf("UnmarshalJSON(MarshalJSON): %v\n%s", err, after)
		}
		if got := marshal(t, &back); got != after {
			t.Fatalf("round trip differs:\n%s\n%s", after, got)
		}
	})
}

// FuzzUnmarshal checks that UnmarshalJSON never panics and that whatever it
// accepts marshals to a stable form within the limits.
func FuzzUnmarshal(f *testing.F) {
	tw := New("dev", "mod", t0)
	f.Add([]byte(marshal(f, tw)))
	tw.PatchDesired([]byte(`{"a":{"b":[1,{"c":"d"}]},"e":1.50}`), t1)
	tw.PatchReported([]byte(`{"r":{"s":true}}`), t2)
	tw.PatchTags([]byte(`{"t":"x"}`), t3)
	f.Add([]byte(marshal(f, tw)))
	f.Add([]byte(`{"deviceId":"d","properties":{"desired":{"a":1,"$version":3}}}`))
	f.Add([]byte(`{"properties":{"desired":{"a":{"b":1},"$metadata":{"a":{"$lastUpdated":"x","b":{}}}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var tw Twin
		if err := tw.UnmarshalJSON(data); err != nil {
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("error %v is %T, want *Error", err, err)
			}
			return
		}
		checkTwin(t, &tw, false)
		b1 := marshal(t, &tw)
		var back Twin
		if err := back.UnmarshalJSON([]byte(b1)); err != nil {
			t.Fatalf("UnmarshalJSON(MarshalJSON): %v\n%s", err, b1)
		}
		if b2 := marshal(t, &back); b2 != b1 {
			t.Fatalf("round trip differs:\n%s\n%s", b1, b2)
		}
	})
}

// checkTwin checks, independently of the write code, that every section is
// within the limits and that its metadata mirrors its content; strict also
// checks the $lastUpdatedVersion ordering that writes maintain.
func checkTwin(t *testing.T, tw *Twin, strict bool) {
	t.Helper()
	for _, s := range []Section{Desired, Reported, Tags} {
		c := content(tw, s)
		if !json.Valid(c) {
			t.Fatalf("%s content is not valid JSON: %s", s, c)
		}
		if len(c) > s.limit() {
			t.Fatalf("%s is %d bytes, limit %d", s, len(c), s.limit())
		}
		root := tw.root(s)
		if root.size != len(c) {
			t.Fatalf("%s cached size %d, content %d bytes", s, root.size, len(c))
		}
		v, err := decode(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkLimits(v, 0, strict); err != nil {
			t.Fatalf("%s: %v in %s", s, err, c)
		}
		if s == Tags {
			continue
		}
		sec, err := decode(tw.SectionJSON(s))
		if err != nil {
			t.Fatalf("%s section JSON: %v", s, err)
		}
		sm := sec.(map[string]any)
		version, _ := sm["$version"].(json.Number).Int64()
		if err := checkMeta(v, sm["$metadata"], s == Desired, version, strict); err != nil {
			t.Fatalf("%s metadata: %v\n%s", s, err, tw.SectionJSON(s))
		}
	}
}

func checkLimits(v any, depth int, strict bool) error {
	limit := MaxDepth + 1 // a value inside the tenth nested object
	switch v.(type) {
	case []any, map[string]any:
		limit = MaxDepth
	}
	if depth > limit {
		return fmt.Errorf("depth %d", depth)
	}
	switch v := v.(type) {
	case json.Number:
		if !strict {
			break
		}
		if f, _ := strconv.ParseFloat(string(v), 64); math.IsInf(f, 0) {
			return fmt.Errorf("number %s is not a finite float", v)
		}
		if !strings.ContainsAny(string(v), ".eE") {
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil || n > 4503599627370495 || n < -4503599627370495 {
				return fmt.Errorf("integer %s out of range", v)
			}
		}
	case string:
		if len(v) > MaxStringSize {
			return fmt.Errorf("string of %d bytes", len(v))
		}
	case []any:
		for _, e := range v {
			if err := checkLimits(e, depth+1, strict); err != nil {
				return err
			}
		}
	case map[string]any:
		for k, e := range v {
			if k == "" || len(k) > MaxKeySize {
				return fmt.Errorf("bad key length %d", len(k))
			}
			for _, r := range k {
				if r == '.' || r == '$' || r == ' ' || (r < 0x20) || (r >= 0x7f && r <= 0x9f) || unicode.IsControl(r) {
					return fmt.Errorf("bad key %q", k)
				}
			}
			if e == nil && depth == 0 {
				return fmt.Errorf("null member %q", k)
			}
			if err := checkLimits(e, depth+1, strict); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkMeta checks that meta mirrors content v: metadata on every object and
// leaf, none inside arrays or for missing members, $lastUpdatedVersion
// (desired) no newer than the parent's nor the section's $version.
func checkMeta(v, meta any, withVersion bool, limit int64, strict bool) error {
	m, ok := meta.(map[string]any)
	if !ok {
		return fmt.Errorf("missing metadata")
	}
	if _, ok := m["$lastUpdated"].(string); !ok {
		return fmt.Errorf("missing $lastUpdated")
	}
	lv, has := m["$lastUpdatedVersion"].(json.Number)
	if has != withVersion {
		return fmt.Errorf("$lastUpdatedVersion present = %v", has)
	}
	if withVersion && strict {
		n, _ := lv.Int64()
		if n < 1 || n > limit {
			return fmt.Errorf("$lastUpdatedVersion %d outside 1..%d", n, limit)
		}
		limit = n
	}
	obj, isObj := v.(map[string]any)
	for k := range m {
		if strings.HasPrefix(k, "$") {
			continue
		}
		if _, ok := obj[k]; !isObj || !ok {
			return fmt.Errorf("metadata for missing member %q", k)
		}
	}
	for k, e := range obj {
		if err := checkMeta(e, m[k], withVersion, limit, strict); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	return nil
}
