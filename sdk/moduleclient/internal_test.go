package moduleclient

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestParseResponseTopic(t *testing.T) {
	for _, tc := range []struct {
		topic   string
		status  int
		rid     string
		version string
		err     string
	}{
		{"$iothub/twin/res/200/?$rid=a-1", 200, "a-1", "", ""},
		{"$iothub/twin/res/204/?$rid=x&$version=7", 204, "x", "7", ""},
		{"$iothub/twin/res/400/?$rid=1", 400, "1", "", ""},
		{"$iothub/twin/res/abc/?$rid=1", 0, "", "", "not a number"},
		{"$iothub/twin/res/200", 0, "", "", "no property bag"},
		{"$iothub/twin/PATCH/properties/desired/?$version=1", 0, "", "", "not under"},
		{"$iothub/twin/res/200/?$rid=%zz", 0, "", "", "property bag"},
	} {
		status, q, err := parseResponseTopic(tc.topic)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.topic, err, tc.err)
			}
			continue
		}
		if err != nil || status != tc.status || q.Get("$rid") != tc.rid || q.Get("$version") != tc.version {
			t.Errorf("%s: %d %v %v", tc.topic, status, q, err)
		}
	}
	if v := versionOf("$iothub/twin/PATCH/properties/desired/?$version=42"); v != 42 {
		t.Errorf("versionOf: %d", v)
	}
}

// FuzzParseResponseTopic: the response topic parser never panics, and what
// it accepts has a status of three digits.
func FuzzParseResponseTopic(f *testing.F) {
	for _, s := range []string{"$iothub/twin/res/200/?$rid=1", "$iothub/twin/res/204/?$rid=x&$version=7", "$iothub/twin/res/", "$iothub/twin/res//?"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		status, _, err := parseResponseTopic(topic)
		if err == nil && (status < 100 || status > 999) {
			t.Fatalf("%q: status %d", topic, status)
		}
		_ = versionOf(topic)
	})
}

// TestDiffMerge: the patch diff makes from one document to another turns
// the first into the second when merged (RFC 7386), removed properties as
// null.
func TestDiffMerge(t *testing.T) {
	doc := func(s string) map[string]any {
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, tc := range []struct{ from, to, patch string }{
		{`{}`, `{"a":1}`, `{"a":1}`},
		{`{"a":1,"b":{"c":2,"d":3}}`, `{"a":1,"b":{"c":2}}`, `{"b":{"d":null}}`},
		{`{"a":{"x":1}}`, `{"a":5}`, `{"a":5}`},
		{`{"a":[1,2]}`, `{"a":[1,3]}`, `{"a":[1,3]}`},
		{`{"a":1,"gone":true}`, `{"a":1}`, `{"gone":null}`},
		{`{"a":1}`, `{"a":1}`, `{}`},
	} {
		from, to := doc(tc.from), doc(tc.to)
		p := diff(from, to)
		if !reflect.DeepEqual(p, doc(tc.patch)) {
			t.Errorf("diff(%s, %s) = %v, want %s", tc.from, tc.to, p, tc.patch)
		}
		if got := mergePatch(clone(from).(map[string]any), p); !reflect.DeepEqual(got, to) {
			t.Errorf("merge(%s, diff) = %v, want %s", tc.from, got, tc.to)
		}
	}
}
