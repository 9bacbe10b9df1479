package twin

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var (
	t0 = time.Date(2026, 11, 27, 9, 42, 56, 123456700, time.UTC)
	t1 = t0.Add(time.Second)
	t2 = t0.Add(2 * time.Second)
	t3 = t0.Add(3 * time.Second)
)

func decodeT(t testing.TB, s string) any {
	t.Helper()
	v, err := decode([]byte(s))
	if err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return v
}

// canon returns the canonical compact JSON of s (keys sorted).
func canon(t testing.TB, s string) string {
	t.Helper()
	b, err := appendLeaf(nil, decodeT(t, s), nil, 0, noCheck)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func marshal(t testing.TB, tw *Twin) string {
	t.Helper()
	b, err := tw.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func patchSection(tw *Twin, s Section, patch []byte) (bool, error) {
	switch s {
	case Desired:
		return tw.PatchDesired(patch, t1)
	case Reported:
		return tw.PatchReported(patch, t1)
	default:
		return tw.PatchTags(patch, t1)
	}
}

func content(tw *Twin, s Section) []byte {
	switch s {
	case Desired:
		return tw.DesiredJSON()
	case Reported:
		return tw.ReportedJSON()
	default:
		return tw.TagsJSON()
	}
}

// mustPatch returns a checker for the (changed, err) result of a write that
// must succeed and change the twin: mustPatch(t)(tw.PatchDesired(…)).
func mustPatch(t testing.TB) func(bool, error) {
	t.Helper()
	return func(changed bool, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if !changed {
			t.Fatal("changed = false, want true")
		}
	}
}

func TestNew(t *testing.T) {
	tw := New("dev1", "mod1", t0)
	want := `{"deviceId":"dev1","moduleId":"mod1","etag":"AAAAAAAAAAE=","version":1,"status":"enabled","tags":{},` +
		`"properties":{"desired":{"$metadata":{"$lastUpdated":"2026-11-27T09:42:56.1234567Z","$lastUpdatedVersion":1},"$version":1},` +
		`"reported":{"$metadata":{"$lastUpdated":"2026-11-27T09:42:56.1234567Z"},"$version":1}}}`
	if got := marshal(t, tw); got != want {
		t.Errorf("New:\n got %s\nwant %s", got, want)
	}
	if tw.DesiredVersion() != 1 || tw.ReportedVersion() != 1 || tw.Version != 1 {
		t.Errorf("versions = %d %d %d, want 1 1 1", tw.DesiredVersion(), tw.ReportedVersion(), tw.Version)
	}
}

func TestTimeFormat(t *testing.T) {
	loc := time.FixedZone("x", 2*3600)
	cases := map[time.Time]string{
		time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC):         "2026-01-02T03:04:05.0000000Z",
		time.Date(2026, 1, 2, 5, 4, 5, 1234567, loc):        "2026-01-02T03:04:05.0012345Z",
		time.Date(2026, 1, 2, 3, 4, 5, 999999999, time.UTC): "2026-01-02T03:04:05.9999999Z",
	}
	for in, want := range cases {
		if got := formatTime(in); got != want {
			t.Errorf("formatTime(%v) = %s, want %s", in, got, want)
		}
		if _, err := time.Parse(time.RFC3339Nano, want); err != nil {
			t.Errorf("%s is not RFC 3339: %v", want, err)
		}
	}
}

func TestVersionsAndETag(t *testing.T) {
	tw := New("d", "m", t0)
	check := func(step string, version, desired, reported int64) {
		t.Helper()
		if tw.Version != version || tw.DesiredVersion() != desired || tw.ReportedVersion() != reported {
			t.Errorf("%s: versions twin/desired/reported = %d/%d/%d, want %d/%d/%d",
				step, tw.Version, tw.DesiredVersion(), tw.ReportedVersion(), version, desired, reported)
		}
		if tw.ETag != ETag(version) {
			t.Errorf("%s: etag = %s, want %s", step, tw.ETag, ETag(version))
		}
	}
	check("new", 1, 1, 1)
	mustPatch(t)(tw.PatchDesired([]byte(`{"a":1}`), t1))
	check("desired", 2, 2, 1)
	if tw.ETag != "AAAAAAAAAAI=" {
		t.Errorf("etag = %s, want AAAAAAAAAAI=", tw.ETag)
	}
	noChange := func(step, patch string, f func([]byte, time.Time) (bool, error)) {
		t.Helper()
		before := marshal(t, tw)
		changed, err := f([]byte(patch), t2)
		if err != nil || changed {
			t.Errorf("%s %s: changed, err = %v, %v; want false, nil", step, patch, changed, err)
		}
		if marshal(t, tw) != before {
			t.Errorf("%s %s: twin changed", step, patch)
		}
	}
	noChange("same value", `{"a":1}`, tw.PatchDesired)
	noChange("empty patch", `{}`, tw.PatchDesired)
	noChange("delete absent", `{"zz":null,"a":1}`, tw.PatchDesired)
	noChange("empty reported", `{}`, tw.PatchReported)
	noChange("delete absent tag", `{"t":null}`, tw.PatchTags)
	noChange("replace same", `{"a":1,"n":null}`, tw.ReplaceDesired)
	noChange("apply same", `{"properties":{"desired":{"a":1}},"tags":{}}`, func(b []byte, now time.Time) (bool, error) {
		return tw.Apply(b, now, false)
	})
	check("no changes", 2, 2, 1)

	mustPatch(t)(tw.PatchDesired([]byte(`{"a":1.0}`), t1)) // a number written differently is a change
	check("1 -> 1.0", 3, 3, 1)
	mustPatch(t)(tw.PatchReported([]byte(`{"r":true}`), t1))
	check("reported", 4, 3, 2)
	mustPatch(t)(tw.PatchTags([]byte(`{"site":"x"}`), t1))
	check("tags", 5, 3, 2)
	mustPatch(t)(tw.Apply([]byte(`{"tags":{"site":"y"},"properties":{"desired":{"a":2}}}`), t2, false))
	check("apply tags+desired", 6, 4, 2)
	mustPatch(t)(tw.Apply([]byte(`{"tags":{"site":"z"},"properties":{"desired":{"a":2}}}`), t2, false))
	check("apply tags only changes", 7, 4, 2)
	mustPatch(t)(tw.Apply([]byte(`{"properties":{"desired":{"a":3},"reported":{"r":false}}}`), t2, true))
	check("apply desired+reported", 8, 5, 3)
	mustPatch(t)(tw.ReplaceTags([]byte(`{}`), t3))
	check("replace tags", 9, 5, 3)
	mustPatch(t)(tw.ReplaceDesired([]byte(`{"b":1}`), t3))
	check("replace desired", 10, 6, 3)
	mustPatch(t)(tw.PatchDesired([]byte(`{"b":null}`), t3))
	check("delete", 11, 7, 3)

	if got := ETag(256); got != "AAAAAAAAAQA=" {
		t.Errorf("ETag(256) = %s", got)
	}
}

func TestFailedWritesLeaveTwinUnchanged(t *testing.T) {
	tw := New("d", "m", t0)
	mustPatch(t)(tw.PatchDesired([]byte(`{"a":{"b":1},"s":"x"}`), t1))
	mustPatch(t)(tw.PatchReported([]byte(`{"r":1}`), t1))
	mustPatch(t)(tw.PatchTags([]byte(`{"t":1}`), t1))
	before := marshal(t, tw)
	big := strings.Repeat("x", MaxStringSize+1)
	bad := []struct {
		name string
		do   func() (bool, error)
	}{
		{"invalid json", func() (bool, error) { return tw.PatchDesired([]byte(`{"a":`), t2) }},
		{"trailing data", func() (bool, error) { return tw.PatchDesired([]byte(`{"a":1} {}`), t2) }},
		{"empty", func() (bool, error) { return tw.PatchDesired(nil, t2) }},
		{"array", func() (bool, error) { return tw.PatchDesired([]byte(`[1]`), t2) }},
		{"null", func() (bool, error) { return tw.PatchReported([]byte(`null`), t2) }},
		{"string", func() (bool, error) { return tw.PatchTags([]byte(`"x"`), t2) }},
		{"bad key after good change", func() (bool, error) { return tw.PatchDesired([]byte(`{"a":{"b":2},"z.z":1}`), t2) }},
		{"$version", func() (bool, error) { return tw.PatchDesired([]byte(`{"$version":4}`), t2) }},
		{"$metadata", func() (bool, error) { return tw.PatchReported([]byte(`{"$metadata":null}`), t2) }},
		{"long string", func() (bool, error) { return tw.PatchTags([]byte(`{"t":"`+big+`"}`), t2) }},
		{"replace bad", func() (bool, error) { return tw.ReplaceDesired([]byte(`{"ok":1,"x":{"a b":1}}`), t2) }},
		{"replace tags too big", func() (bool, error) { return tw.ReplaceTags(docOfSize(t, MaxTagsSize+1), t2) }},
		{"apply tags ok desired bad", func() (bool, error) {
			return tw.Apply([]byte(`{"tags":{"t":2},"properties":{"desired":{"a":{"$x":1}}}}`), t2, false)
		}},
		{"apply desired ok tags bad", func() (bool, error) {
			return tw.Apply([]byte(`{"tags":{"t":"`+big+`"},"properties":{"desired":{"a":2}}}`), t2, false)
		}},
		{"apply reported not allowed", func() (bool, error) {
			return tw.Apply([]byte(`{"tags":{"t":2},"properties":{"reported":{"r":2}}}`), t2, false)
		}},
		{"apply unknown section", func() (bool, error) {
			return tw.Apply([]byte(`{"tags":{"t":2},"properties":{"wanted":{}}}`), t2, false)
		}},
		{"apply properties not object", func() (bool, error) { return tw.Apply([]byte(`{"properties":[]}`), t2, true) }},
		{"apply tags null", func() (bool, error) { return tw.Apply([]byte(`{"tags":null}`), t2, true) }},
		{"apply body array", func() (bool, error) { return tw.Apply([]byte(`[]`), t2, true) }},
		{"replace reported", func() (bool, error) {
			return tw.Replace([]byte(`{"tags":{},"properties":{"desired":{},"reported":{}}}`), t2)
		}},
		{"replace desired bad", func() (bool, error) {
			return tw.Replace([]byte(`{"tags":{},"properties":{"desired":{"":1}}}`), t2)
		}},
	}
	for _, c := range bad {
		changed, err := c.do()
		var te *Error
		if !errors.As(err, &te) {
			t.Errorf("%s: err = %v (%T), want *Error", c.name, err, err)
		}
		if changed {
			t.Errorf("%s: changed = true", c.name)
		}
		if after := marshal(t, tw); after != before {
			t.Errorf("%s: twin changed:\n%s\n%s", c.name, before, after)
		}
	}
}

func TestErrorStrings(t *testing.T) {
	tw := New("d", "m", t0)
	cases := []struct{ patch, want string }{
		{`{"a":{"b.c":1}}`, `properties.desired.a["b.c"]: key must not contain '.'`},
		{`{"$version":1}`, `properties.desired["$version"]: key must not start with '$' ($metadata, $version and other $ names are read-only)`},
		{`{"a":{"x":["ok",{"k y":1}]}}`, `properties.desired.a.x[1]["k y"]: key must not contain a space`},
		{`[]`, `properties.desired: must be a JSON object, not an array`},
		{`{"a":}`, `properties.desired: invalid JSON: invalid character '}' looking for beginning of value`},
	}
	for _, c := range cases {
		_, err := tw.PatchDesired([]byte(c.patch), t1)
		if err == nil || err.Error() != c.want {
			t.Errorf("PatchDesired(%s) error:\n got %v\nwant %s", c.patch, err, c.want)
		}
	}
	_, err := tw.Apply([]byte(`{"properties":{"reported":{"a":1}}}`), t1, false)
	if err == nil || err.Error() != "properties.reported: reported properties are written by the module only" {
		t.Errorf("Apply reported: %v", err)
	}
	_, err = tw.Apply([]byte(`1`), t1, false)
	if err == nil || err.Error() != "twin body must be a JSON object, not a number" {
		t.Errorf("Apply number: %v", err)
	}
}

func TestApply(t *testing.T) {
	tw := New("d", "m", t0)
	body := `{"deviceId":"other","etag":"x","version":99,"status":"disabled",
		"tags":{"site":{"building":"43"}},"properties":{"desired":{"interval":5}}}`
	mustPatch(t)(tw.Apply([]byte(body), t1, false))
	if got := string(tw.TagsJSON()); got != `{"site":{"building":"43"}}` {
		t.Errorf("tags = %s", got)
	}
	if got := string(tw.DesiredJSON()); got != `{"interval":5}` {
		t.Errorf("desired = %s", got)
	}
	if tw.DeviceID != "d" || tw.Status != "enabled" || tw.Version != 2 {
		t.Errorf("identity fields taken from body: %+v", tw)
	}
	// Only tags: desired untouched.
	mustPatch(t)(tw.Apply([]byte(`{"tags":{"site":{"floor":1}}}`), t2, false))
	if got := string(tw.TagsJSON()); got != `{"site":{"building":"43","floor":1}}` {
		t.Errorf("tags = %s", got)
	}
	if tw.DesiredVersion() != 2 {
		t.Errorf("desired version = %d, want 2", tw.DesiredVersion())
	}
}

func TestReplace(t *testing.T) {
	tw := New("d", "m", t0)
	mustPatch(t)(tw.Apply([]byte(`{"tags":{"a":1,"b":{"c":1}},"properties":{"desired":{"x":1,"y":{"z":1,"w":2}}}}`), t1, false))
	mustPatch(t)(tw.PatchReported([]byte(`{"r":1}`), t1))
	mustPatch(t)(tw.Replace([]byte(`{"tags":{"b":{"d":2}},"properties":{"desired":{"y":{"z":1},"v":null}}}`), t2))
	if got := string(tw.TagsJSON()); got != `{"b":{"d":2}}` {
		t.Errorf("tags = %s", got)
	}
	if got := string(tw.DesiredJSON()); got != `{"y":{"z":1}}` {
		t.Errorf("desired = %s", got)
	}
	if got := string(tw.ReportedJSON()); got != `{"r":1}` {
		t.Errorf("reported = %s", got)
	}
	if tw.DesiredVersion() != 3 || tw.Version != 4 {
		t.Errorf("versions %d %d, want desired 3 twin 4", tw.DesiredVersion(), tw.Version)
	}
	// Absent parts become empty.
	mustPatch(t)(tw.Replace([]byte(`{"deviceId":"d"}`), t3))
	if got := string(tw.TagsJSON()) + string(tw.DesiredJSON()); got != `{}{}` {
		t.Errorf("after empty replace: %s", got)
	}
	changed, err := tw.Replace([]byte(`{}`), t3)
	if err != nil || changed {
		t.Errorf("replace with same: %v %v", changed, err)
	}
}

func TestRoundTrip(t *testing.T) {
	tw := New("dev:1", "mod$x", t0)
	mustPatch(t)(tw.PatchDesired([]byte(`{"big":4503599627370495,"bigf":123456789012345678901234567890.0,"f":1.50,"e":1E+3,"neg":-0.0,
		"s":"tab\t quote\" back\\ nl\n <>& \u2028 é 😀 \u0001","arr":[1,"x",null,{"k":[true,false]}],
		"obj":{"deep":{"er":{}}},"t":true,"n":false}`), t1))
	mustPatch(t)(tw.PatchReported([]byte(`{"lastDesiredVersion":2,"modules":{"a":{"runtimeStatus":"running"}}}`), t2))
	mustPatch(t)(tw.PatchTags([]byte(`{"env":"prod","loc":{"x":1}}`), t3))
	b1 := marshal(t, tw)
	if !json.Valid([]byte(b1)) {
		t.Fatalf("MarshalJSON output is not valid JSON: %s", b1)
	}
	var tw2 Twin
	if err := json.Unmarshal([]byte(b1), &tw2); err != nil {
		t.Fatal(err)
	}
	if b2 := marshal(t, &tw2); b2 != b1 {
		t.Errorf("round trip differs:\n%s\n%s", b1, b2)
	}
	// encoding/json calls MarshalJSON (and re-escapes HTML, which is fine).
	b3, err := json.Marshal(tw)
	if err != nil {
		t.Fatal(err)
	}
	var tw3 Twin
	if err := json.Unmarshal(b3, &tw3); err != nil {
		t.Fatal(err)
	}
	if marshal(t, &tw3) != b1 {
		t.Error("json.Marshal round trip differs")
	}
	if !strings.Contains(b1, `"big":4503599627370495`) || !strings.Contains(b1, `"bigf":123456789012345678901234567890.0`) || !strings.Contains(b1, `"f":1.50`) {
		t.Errorf("numbers not kept as written: %s", b1)
	}
	// The round-tripped twin keeps working with the same versions and metadata.
	mustPatch(t)(tw2.PatchDesired([]byte(`{"t":false}`), t3))
	mustPatch(t)(tw.PatchDesired([]byte(`{"t":false}`), t3))
	if marshal(t, tw) != marshal(t, &tw2) {
		t.Error("twin and round-tripped twin diverge after the same patch")
	}
}

func TestUnmarshalDeviceTwinWithoutMetadata(t *testing.T) {
	in := `{"deviceId":"devA","etag":"AAAAAAAAAAc=","status":"enabled","connectionState":"Connected","version":7,
		"tags":{"deploymentLocation":{"building":"43","floor":"1"}},
		"properties":{"desired":{"telemetryConfig":{"sendFrequency":"5m"},"$metadata":{"$lastUpdated":"2026-01-01T00:00:00Z","$lastUpdatedVersion":5},"$version":5},
		"reported":{"telemetryConfig":{"sendFrequency":"5m","status":"success"},"batteryLevel":55,"$version":4}}}`
	var tw Twin
	if err := tw.UnmarshalJSON([]byte(in)); err != nil {
		t.Fatal(err)
	}
	if tw.ModuleID != "" || tw.Version != 7 || tw.DesiredVersion() != 5 || tw.ReportedVersion() != 4 || tw.ETag != "AAAAAAAAAAc=" {
		t.Errorf("fields: %+v", tw)
	}
	want := `{"telemetryConfig":{"sendFrequency":"5m"},"$metadata":{"$lastUpdated":"2026-01-01T00:00:00Z","$lastUpdatedVersion":5,` +
		`"telemetryConfig":{"$lastUpdated":"2026-01-01T00:00:00Z","$lastUpdatedVersion":5,"sendFrequency":{"$lastUpdated":"2026-01-01T00:00:00Z","$lastUpdatedVersion":5}}},"$version":5}`
	if got := string(tw.SectionJSON(Desired)); got != want {
		t.Errorf("desired:\n got %s\nwant %s", got, want)
	}
	if got := string(tw.SectionJSON(Reported)); !strings.Contains(got, `"$metadata":{"$lastUpdated":"0001-01-01T00:00:00Z","batteryLevel"`) {
		t.Errorf("reported: %s", got)
	}
	b := marshal(t, &tw)
	if strings.Contains(b, "moduleId") || strings.Contains(b, "connectionState") {
		t.Errorf("marshal: %s", b)
	}
}

func TestUnmarshalErrors(t *testing.T) {
	bad := []string{
		`[]`,
		`{"version":"x"}`,
		`{"tags":[]}`,
		`{"tags":{"$x":1}}`,
		`{"tags":{"a":null}}`,
		`{"properties":{"desired":{"a.b":1}}}`,
		`{"properties":{"desired":{"$version":-1}}}`,
		`{"properties":{"desired":{"$version":"1"}}}`,
		`{"properties":{"desired":{"$metadata":[]}}}`,
		`{"properties":{"desired":{"$other":1}}}`,
		`{"properties":{"desired":{"a":1,"$metadata":{"b":{}}}}}`,
		`{"properties":{"desired":{"a":1,"$metadata":{"a":{"c":{}}}}}}`,
		`{"properties":{"desired":{"a":1,"$metadata":{"a":{"$lastUpdated":1}}}}}`,
		`{"properties":{"desired":{"a":1,"$metadata":{"a":{"$lastUpdatedVersion":"1"}}}}}`,
		`{"properties":{"reported":{"a":"` + strings.Repeat("x", MaxStringSize+1) + `"}}}`,
		`{"tags":` + string(docOfSize(t, MaxTagsSize+1)) + `}`,
	}
	for _, in := range bad {
		tw := New("d", "m", t0)
		err := tw.UnmarshalJSON([]byte(in))
		var te *Error
		if !errors.As(err, &te) {
			t.Errorf("UnmarshalJSON(%.80s): err = %v, want *Error", in, err)
		}
	}
}

func TestCloneAndCopies(t *testing.T) {
	tw := New("d", "m", t0)
	mustPatch(t)(tw.PatchDesired([]byte(`{"a":{"b":1},"arr":[1,2]}`), t1))
	c := tw.Clone()
	mustPatch(t)(c.PatchDesired([]byte(`{"a":{"b":2}}`), t2))
	c.Status = "disabled"
	if got := string(tw.DesiredJSON()); got != `{"a":{"b":1},"arr":[1,2]}` || tw.Version != 2 || tw.Status != "enabled" {
		t.Errorf("original changed by clone: %s %d", got, tw.Version)
	}
	d := tw.Desired()
	d["a"].(map[string]any)["b"] = "changed"
	d["new"] = 1
	if got := string(tw.DesiredJSON()); got != `{"a":{"b":1},"arr":[1,2]}` {
		t.Errorf("Desired() is not a copy: %s", got)
	}
	want := map[string]any{"a": map[string]any{"b": json.Number("1")}, "arr": []any{json.Number("1"), json.Number("2")}}
	if got := tw.Desired(); !reflect.DeepEqual(got, want) {
		t.Errorf("Desired() = %#v", got)
	}
	if len(tw.Reported()) != 0 || len(tw.Tags()) != 0 {
		t.Error("Reported/Tags not empty")
	}
}

func TestSectionJSON(t *testing.T) {
	tw := New("d", "m", t0)
	mustPatch(t)(tw.PatchReported([]byte(`{"a":1}`), t1))
	mustPatch(t)(tw.PatchTags([]byte(`{"t":1}`), t1))
	wantR := `{"a":1,"$metadata":{"$lastUpdated":"2026-11-27T09:42:57.1234567Z","a":{"$lastUpdated":"2026-11-27T09:42:57.1234567Z"}},"$version":2}`
	if got := string(tw.SectionJSON(Reported)); got != wantR {
		t.Errorf("reported:\n got %s\nwant %s", got, wantR)
	}
	wantD := `{"$metadata":{"$lastUpdated":"2026-11-27T09:42:56.1234567Z","$lastUpdatedVersion":1},"$version":1}`
	if got := string(tw.SectionJSON(Desired)); got != wantD {
		t.Errorf("desired:\n got %s\nwant %s", got, wantD)
	}
	if got := string(tw.SectionJSON(Tags)); got != `{"t":1}` {
		t.Errorf("tags: %s", got)
	}
	if tw.SectionJSON("nope") != nil {
		t.Error("unknown section: not nil")
	}
	if got, want := string(tw.PropertiesJSON()), `{"desired":`+wantD+`,"reported":`+wantR+`}`; got != want {
		t.Errorf("properties:\n got %s\nwant %s", got, want)
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "\"\\/", "\b\f\n\r\t\x00\x1f\x7f", "<>&", "\u2028\u2029", "é😀", "bad\xffutf8", "\u0080\u009f"} {
		got := appendString(nil, s)
		if quotedLen(s) != len(got) {
			t.Errorf("quotedLen(%q) = %d, want %d", s, quotedLen(s), len(got))
		}
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("appendString(%q) = %s: %v", s, got, err)
			continue
		}
		want, _ := json.Marshal(s)
		var wantBack string
		_ = json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("appendString(%q) decodes to %q, encoding/json to %q", s, back, wantBack)
		}
	}
}
