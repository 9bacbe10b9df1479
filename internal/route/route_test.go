package route

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// Routes from IoT Edge's documentation ("Deploy modules and establish
// routes in IoT Edge", the SimulatedTemperatureSensor + filter module
// tutorial) and what they take.
func TestParseDocs(t *testing.T) {
	tests := []struct {
		text string
		src  Source
		sink Sink
	}{
		{"FROM /messages/* INTO $upstream", Source{Kind: AllMessages}, Sink{Upstream: true}},
		{"FROM /messages/modules/SimulatedTemperatureSensor/outputs/temperatureOutput INTO BrokeredEndpoint(\"/modules/filtermodule/inputs/input1\")",
			Source{Kind: ModuleOutput, Module: "SimulatedTemperatureSensor", Output: "temperatureOutput"}, Sink{Module: "filtermodule", Input: "input1"}},
		{"FROM /messages/modules/filtermodule/outputs/output1 INTO $upstream",
			Source{Kind: ModuleOutput, Module: "filtermodule", Output: "output1"}, Sink{Upstream: true}},
		{"FROM /messages/modules/tempSensor/* INTO $upstream", Source{Kind: ModuleMessages, Module: "tempSensor"}, Sink{Upstream: true}},
		{"FROM /messages/modules/tempSensor/outputs/* INTO $upstream", Source{Kind: ModuleAnyOutput, Module: "tempSensor"}, Sink{Upstream: true}},
		{"FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO $upstream", Source{Kind: AllMessages}, Sink{Upstream: true}},
		{"from /messages/* where alert = 'true' into brokeredEndpoint('/modules/b/inputs/in')", Source{Kind: AllMessages}, Sink{Module: "b", Input: "in"}},
		{"  FROM /messages/*\n  WHERE a='INTO' INTO $upstream  ", Source{Kind: AllMessages}, Sink{Upstream: true}},
	}
	for _, tt := range tests {
		r, err := Parse("r", tt.text)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.text, err)
			continue
		}
		if r.Source != tt.src || r.Sink != tt.sink {
			t.Errorf("Parse(%q) = %+v INTO %+v, want %+v INTO %+v", tt.text, r.Source, r.Sink, tt.src, tt.sink)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		text   string
		column int
		want   string
	}{
		{"", 1, "starts with FROM"},
		{"SELECT * INTO $upstream", 1, "starts with FROM"},
		{"FROM /twinChangeNotifications INTO $upstream", 6, "not supported"},
		{"FROM /messages/modules/a INTO $upstream", 6, "not supported"},
		{"FROM /messages/* INTO", 22, "no sink"},
		{"FROM /messages/* INTO $downstream", 23, "not supported"},
		{"FROM /messages/* INTO BrokeredEndpoint(\"/modules/b/outputs/x\")", 23, "not a module input"},
		{"FROM /messages/* INTO BrokeredEndpoint(\"/modules/b/inputs/x\"", 23, "closing )"},
		{"FROM /messages/*", 17, "INTO expected"},
		{"FROM /messages/* WHERE a = 1", 29, "INTO missing"},
		{"FROM /messages/* WHERE $body.temperature > 50 INTO $upstream", 24, "body"},
		{"FROM /messages/* WHERE $twin.tags.x = 'y' INTO $upstream", 24, "twin"},
		{"FROM /messages/* WHERE $nonsense = 'y' INTO $upstream", 24, "unknown system property"},
		{"FROM /messages/* WHERE a = INTO $upstream", 28, "ends too early"},
		{"FROM /messages/* WHERE a = 'x INTO $upstream", 28, "no closing quote"},
		{"FROM /messages/* WHERE GEO_DISTANCE(a, b) > 1 INTO $upstream", 24, "GEO_DISTANCE is not supported"},
		{"FROM /messages/* WHERE LOWER(a, b) = 'x' INTO $upstream", 24, "takes 1 arguments"},
		{"FROM /messages/* WHERE (a = 'x' INTO $upstream", 33, "missing )"},
		{"FROM /messages/* WHERE a ! 'x' INTO $upstream", 26, "write != or NOT"},
		{"FROM /messages/* WHERE a = 'x' b INTO $upstream", 32, "unexpected \"b\""},
		{"FROM /messages/* WHERE INTO $upstream", 24, "no condition"},
		{"FROM /messages/* INTO $upstream junk", 33, "after the sink"},
	}
	for _, tt := range tests {
		_, err := Parse("myroute", tt.text)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("Parse(%q): error %v, want a *Error", tt.text, err)
			continue
		}
		if e.Column != tt.column || !strings.Contains(e.Msg, tt.want) || e.Name != "myroute" {
			t.Errorf("Parse(%q) = %v (column %d), want column %d and %q", tt.text, err, e.Column, tt.column, tt.want)
		}
		if !strings.Contains(err.Error(), `route "myroute", column`) {
			t.Errorf("error %q does not name the route and column", err)
		}
	}
}

func TestConditions(t *testing.T) {
	msg := &Message{
		Module: "a", Output: "out1",
		Properties: map[string]string{"alert": "true", "temperature": "31.5", "kind": "Machine", "name with space": "x", "empty": ""},
		System:     map[string]string{"$contentType": "application/json", "$messageId": "m1", "$connectionModuleId": "a", "$connectionDeviceId": "d", "$outputName": "out1"},
	}
	tests := []struct {
		cond string
		want bool
	}{
		{"alert = 'true'", true},
		{"alert = \"true\"", true},
		{"alert = 'false'", false},
		{"alert != 'false'", true},
		{"alert <> 'true'", false},
		{"temperature > 30", true},
		{"temperature > 30 AND kind = 'Machine'", true},
		{"temperature > 40 OR kind = 'Machine'", true},
		{"temperature > 40 OR kind = 'Other'", false},
		{"NOT (temperature > 40)", true},
		{"temperature >= 31.5 AND temperature <= 31.5", true},
		{"temperature * 2 = 63", true},
		{"temperature - 1.5 = 30", true},
		{"-temperature < 0", true},
		{"temperature % 2 = 1.5", true},
		{"temperature / 0 = 1", false},
		{"missing = 'x'", false},
		{"NOT (missing = 'x')", false}, // undefined stays undefined
		{"missing = 'x' OR alert = 'true'", true},
		{"NOT IS_DEFINED(missing)", true},
		{"IS_DEFINED(alert)", true},
		{"IS_STRING(alert) AND NOT IS_NUMBER(alert) AND NOT IS_BOOL(alert) AND NOT IS_NULL(alert)", true},
		{"kind = 'machine'", false},
		{"LOWER(kind) = 'machine'", true},
		{"UPPER(kind) = 'MACHINE'", true},
		{"LENGTH(kind) = 7", true},
		{"STARTS_WITH(kind, 'Mach')", true},
		{"ENDS_WITH(kind, 'ine')", true},
		{"CONTAINS(kind, 'chi')", true},
		{"INDEX_OF(kind, 'chi') = 2", true},
		{"INDEX_OF(kind, 'zz') = -1", true},
		{"SUBSTRING(kind, 1, 3) = 'ach'", true},
		{"SUBSTRING(kind, 4) = 'ine'", true},
		{"CONCAT(kind, '-', alert) = 'Machine-true'", true},
		{"TRIM(CONCAT(' ', kind, ' ')) = kind", true},
		{"LTRIM(' x') = 'x' AND RTRIM('x ') = 'x'", true},
		{"ABS(-3) = 3", true},
		{"[name with space] = 'x'", true},
		{"empty = ''", true},
		{"$contentType = 'application/json'", true},
		{"$messageId = 'm1' and $connectionModuleId = 'a'", true},
		{"$outputName = 'out1'", true},
		{"$connectionDeviceId = 'd'", true},
		{"$correlationId = 'x'", false},
		{"kind > 10", false},       // a string that is not a number, against a number
		{"true = true", true},      // literals
		{"null = null", true},      // null
		{"kind = true", false},     // mixed types are undefined
		{"alert = true", false},    // a property is a string, not a bool
		{"(alert = 'true')", true}, // parentheses
	}
	for _, tt := range tests {
		r, err := Parse("c", "FROM /messages/* WHERE "+tt.cond+" INTO $upstream")
		if err != nil {
			t.Errorf("%s: %v", tt.cond, err)
			continue
		}
		if got := r.Matches(msg); got != tt.want {
			t.Errorf("%s = %v, want %v", tt.cond, got, tt.want)
		}
	}
}

func TestSources(t *testing.T) {
	m := func(mod, out string) *Message { return &Message{Module: mod, Output: out} }
	tests := []struct {
		from string
		msg  *Message
		want bool
	}{
		{"/messages/*", m("", ""), true},
		{"/messages/*", m("a", "o"), true},
		{"/messages/modules/a/*", m("a", ""), true},
		{"/messages/modules/a/*", m("a", "o"), true},
		{"/messages/modules/a/*", m("b", "o"), false},
		{"/messages/modules/a/outputs/*", m("a", "o"), true},
		{"/messages/modules/a/outputs/*", m("a", ""), false},
		{"/messages/modules/a/outputs/o", m("a", "o"), true},
		{"/messages/modules/a/outputs/o", m("a", "p"), false},
		{"/messages/modules/a/outputs/o", m("b", "o"), false},
	}
	for _, tt := range tests {
		r, err := Parse("s", "FROM "+tt.from+" INTO $upstream")
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Matches(tt.msg); got != tt.want {
			t.Errorf("FROM %s on %+v = %v, want %v", tt.from, tt.msg, got, tt.want)
		}
	}
}

func TestParseJSONBothForms(t *testing.T) {
	routes, err := ParseJSON(json.RawMessage(`{
		"b": "FROM /messages/* INTO $upstream",
		"a": {"route": "FROM /messages/modules/x/* INTO BrokeredEndpoint(\"/modules/y/inputs/i\")", "priority": 3, "timeToLiveSecs": 60},
		"c": {"route": "FROM /messages/modules/z/* INTO $upstream", "priority": 1}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range routes {
		names = append(names, r.Name)
	}
	if strings.Join(names, ",") != "b,c,a" {
		t.Fatalf("order %v, want b (priority 0), c (1), a (3)", names)
	}
	if routes[2].TTLSecs != 60 || routes[2].Priority != 3 || routes[2].Sink.Module != "y" {
		t.Fatalf("route a = %+v", routes[2])
	}
	for _, bad := range []struct{ doc, want string }{
		{`{"x": {"route": "FROM /messages/* INTO $upstream", "priority": 10}}`, "priority 10 is out of range"},
		{`{"x": {"route": "FROM /messages/* INTO $upstream", "timeToLiveSecs": -1}}`, "negative"},
		{`{"x": {"route": "FROM /messages/* INTO $upstream", "colour": 1}}`, "colour"},
		{`{"x": 5}`, "a route is a string"},
		{`{"x": "FROM /messages/* INTO nowhere"}`, `route "x", column 23`},
	} {
		if _, err := ParseJSON(json.RawMessage(bad.doc)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("ParseJSON(%s) = %v, want %q", bad.doc, err, bad.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"FROM /messages/* INTO $upstream",
		"FROM /messages/modules/a/outputs/o WHERE x = 'y' AND NOT IS_DEFINED($connectionModuleId) INTO BrokeredEndpoint(\"/modules/b/inputs/i\")",
		"FROM /messages/* WHERE SUBSTRING(k, 1, 2) = 'a' OR -t * 2 >= 3.5e2 INTO $upstream",
		"FROM /messages/* WHERE [a b] <> 'x''y' INTO $upstream",
	} {
		f.Add(s, "k", "v")
	}
	f.Fuzz(func(t *testing.T, text, k, v string) {
		r, err := Parse("f", text)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Column < 1 || e.Column > len(text)+1 {
				t.Fatalf("Parse(%q): error %v has no column within the text", text, err)
			}
			return
		}
		r.Matches(&Message{Module: "a", Output: "o", Properties: map[string]string{k: v}, System: map[string]string{"$messageId": v}})
		if r.Sink.Upstream == (r.Sink.Module != "") {
			t.Fatalf("Parse(%q): sink %+v is neither upstream nor a module input", text, r.Sink)
		}
	})
}
