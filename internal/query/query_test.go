package query

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// The sample twins of IoT Hub's "Queries for IoT Hub device and module
// twins" page, plus a few of other shapes.
const fleetJSON = `[
{"deviceId": "myDeviceId", "etag": "AAAAAAAAAAc=", "status": "enabled",
 "version": 2, "capabilities": {"iotEdge": false},
 "tags": {"location": {"region": "US", "plant": "Redmond43"}},
 "properties": {
  "desired": {"telemetryConfig": {"configId": "db00ebf5", "sendFrequencyInSecs": 300},
              "$metadata": {"$lastUpdated": "2024-01-02T03:04:05Z"}, "$version": 4},
  "reported": {"connectivity": {"type": "cellular"},
               "telemetryConfig": {"configId": "db00ebf5", "sendFrequencyInSecs": 300, "status": "Success"},
               "$metadata": {"$lastUpdated": "2024-01-02T03:04:05Z",
                             "telemetryConfig": {"$lastUpdated": "2024-01-02T03:04:05Z"}},
               "$version": 7}}},
{"deviceId": "edge1", "status": "enabled", "capabilities": {"iotEdge": true},
 "tags": {"location": {"region": "EU", "plant": "Hannover01"}, "environment": "prod", "building": 43},
 "properties": {"desired": {"$version": 1},
  "reported": {"connectivity": "wired", "x": 5, "telemetryConfig": {"status": "Pending"}, "$version": 3}}},
{"deviceId": "edge2", "status": "disabled", "capabilities": {"iotEdge": true},
 "tags": {"location": {"region": "EU", "plant": "Hannover02"}, "environment": "test", "building": 43},
 "properties": {"desired": {"$version": 1},
  "reported": {"connectivity": "wifi", "x": 2, "telemetryConfig": {"status": "Success"}, "$version": 1}}},
{"deviceId": "leaf", "status": "enabled",
 "tags": {"environment": null, "list": [1, "two", {"three": 3}]},
 "properties": {"desired": {"$version": 1}, "reported": {"$version": 1, "x": "7"}}}
]`

func fleet(t testing.TB) []map[string]any {
	t.Helper()
	var docs []map[string]any
	if err := json.Unmarshal([]byte(fleetJSON), &docs); err != nil {
		t.Fatal(err)
	}
	return docs
}

// matching runs q's WHERE over the fleet and returns the deviceIds matched.
func matching(t *testing.T, q *Query) string {
	t.Helper()
	var ids []string
	for _, d := range fleet(t) {
		if q.Match(d) {
			ids = append(ids, d["deviceId"].(string))
		}
	}
	return strings.Join(ids, ",")
}

func TestDocumentationQueries(t *testing.T) {
	for _, tc := range []struct{ q, want string }{
		{"SELECT * FROM devices", "myDeviceId,edge1,edge2,leaf"},
		{"SELECT * FROM devices WHERE tags.location.region = 'US'", "myDeviceId"},
		{"SELECT * FROM devices WHERE tags.location.region = 'US' AND properties.reported.telemetryConfig.sendFrequencyInSecs >= 60", "myDeviceId"},
		{"SELECT * FROM devices WHERE properties.reported.connectivity IN ['wired', 'wifi']", "edge1,edge2"},
		{"SELECT * FROM devices WHERE properties.reported.connectivity NIN ['wired', 'wifi']", "myDeviceId"},
		{"SELECT * FROM devices WHERE is_defined(properties.reported.connectivity)", "myDeviceId,edge1,edge2"},
		{"SELECT * FROM devices WHERE capabilities.iotEdge = true", "edge1,edge2"},
		{"SELECT * FROM devices WHERE tags.location.plant = 'Hannover01'", "edge1"},
		{"select * from devices where STARTSWITH(tags.location.plant, 'Hannover')", "edge1,edge2"},
		{"SELECT * FROM devices WHERE ENDSWITH(deviceId, '2')", "edge2"},
		{"SELECT * FROM devices WHERE status = 'enabled' AND NOT capabilities.iotEdge", "myDeviceId"},
		{"SELECT * FROM devices WHERE properties.desired.$version > 1", "myDeviceId"},
		{"SELECT * FROM devices WHERE properties.reported.$metadata.telemetryConfig.$lastUpdated >= '2024-01-01'", "myDeviceId"},
		{"SELECT * FROM devices WHERE devices.tags.location.region = 'EU'", "edge1,edge2"},
		{`SELECT * FROM devices WHERE tags.environment = "prod"`, "edge1"},
		{"SELECT * FROM devices WHERE tags.environment = null", "leaf"},
		{"SELECT * FROM devices WHERE IS_NULL(tags.environment)", "leaf"},
		{"SELECT * FROM devices WHERE tags.environment != 'prod'", "edge2"}, // undefined and null do not match
		{"SELECT * FROM devices WHERE tags.environment <> 'prod'", "edge2"},
		{"SELECT * FROM devices WHERE NOT (tags.environment = 'prod')", "edge2"},
		{"SELECT * FROM devices WHERE properties.reported.x > 3", "edge1"}, // "7" is a string: no match
		{"SELECT * FROM devices WHERE properties.reported.x = '7'", "leaf"},
		{"SELECT * FROM devices WHERE properties.reported.x * 2 = 10", "edge1"},
		{"SELECT * FROM devices WHERE properties.reported.x % 2 = 0 OR deviceId = 'leaf'", "edge2,leaf"},
		{"SELECT * FROM devices WHERE tags.building = 43 and tags.environment = 'test'", "edge2"},
		{"SELECT * FROM devices WHERE tags.list[1] = 'two' AND tags.list[2].three = 3", "leaf"},
		{"SELECT * FROM devices WHERE tags['location'].region = 'US'", "myDeviceId"},
		{"SELECT * FROM devices WHERE IS_STRING(properties.reported.connectivity)", "edge1,edge2"},
		{"SELECT * FROM devices WHERE IS_OBJECT(properties.reported.connectivity)", "myDeviceId"},
		{"SELECT * FROM devices WHERE IS_ARRAY(tags.list) AND IS_NUMBER(tags.list[0]) AND IS_BOOL(capabilities.iotEdge) = false", "leaf"},
		{"SELECT * FROM devices WHERE IS_PRIMITIVE(tags.environment)", "edge1,edge2,leaf"},
		{"SELECT * FROM devices WHERE IS_BOOL(capabilities.iotEdge)", "myDeviceId,edge1,edge2"},
		{"SELECT * FROM devices WHERE deviceId < 'edge2'", "edge1"},
	} {
		q, err := Parse(tc.q)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.q, err)
			continue
		}
		if got := matching(t, q); got != tc.want {
			t.Errorf("%s\n matched %q, want %q", tc.q, got, tc.want)
		}
		// The canonical form parses to the same canonical form.
		if q.Where() != nil {
			c, err := ParseCondition(q.Where().Canonical())
			if err != nil {
				t.Errorf("canonical %q of %q: %v", q.Where().Canonical(), tc.q, err)
			} else if c.Canonical() != q.Where().Canonical() {
				t.Errorf("canonical %q reparses as %q", q.Where().Canonical(), c.Canonical())
			}
		}
	}
}

func TestFromModules(t *testing.T) {
	q, err := Parse("SELECT * FROM devices.modules WHERE properties.reported.status = 'scanning' AND deviceId IN ['device1', 'device2']")
	if err != nil {
		t.Fatal(err)
	}
	if q.From() != Modules || !q.Star() || q.Aggregated() {
		t.Fatalf("From %q Star %v Aggregated %v", q.From(), q.Star(), q.Aggregated())
	}
	scanning := map[string]any{"deviceId": "device2", "moduleId": "m", "properties": map[string]any{"reported": map[string]any{"status": "scanning"}}}
	other := map[string]any{"deviceId": "device3", "moduleId": "m", "properties": map[string]any{"reported": map[string]any{"status": "scanning"}}}
	if !q.Match(scanning) || q.Match(other) {
		t.Errorf("Match: device2 %v (want true), device3 %v (want false)", q.Match(scanning), q.Match(other))
	}
	q, err = Parse("SELECT * FROM devices.modules WHERE devices.modules.moduleId = 'm'")
	if err != nil {
		t.Fatal(err)
	}
	if !q.Match(other) {
		t.Error("devices.modules.moduleId does not read moduleId")
	}
}

func TestTargetConditions(t *testing.T) {
	for _, tc := range []struct{ cond, want string }{
		{"tags.environment='prod' AND properties.reported.x > 3", "edge1"},
		{"deviceId='edge2'", "edge2"},
		{"tags.building=43 and tags.environment='test'", "edge2"},
		{"tags.environment IN ['prod', 'test']", "edge1,edge2"},
		{"NOT IS_DEFINED(tags.environment) OR tags.environment != 'prod'", "myDeviceId,edge2"},
		{"(tags.location.region = 'EU' OR tags.location.region = 'US') AND status = 'enabled'", "myDeviceId,edge1"},
		{"properties.reported.x >= -1 AND properties.reported.x <= 5.5e0", "edge1,edge2"},
		{"properties.reported.x - 1 = 4", "edge1"},
		{"-properties.reported.x = -2", "edge2"},
		{`tags.location.plant = 'Hann\u006fver01'`, "edge1"},
		{"true", "myDeviceId,edge1,edge2,leaf"},
		{"undefined = undefined OR null = null AND false", ""},
	} {
		c, err := ParseCondition(tc.cond)
		if err != nil {
			t.Errorf("ParseCondition(%q): %v", tc.cond, err)
			continue
		}
		var ids []string
		for _, d := range fleet(t) {
			if c.Match(d) {
				ids = append(ids, d["deviceId"].(string))
			}
		}
		if got := strings.Join(ids, ","); got != tc.want {
			t.Errorf("%s (%s)\n matched %q, want %q", tc.cond, c.Canonical(), got, tc.want)
		}
		if c.String() != tc.cond {
			t.Errorf("String() = %q, want the condition as given", c.String())
		}
	}
}

func TestArrayEquality(t *testing.T) {
	c, err := ParseCondition("tags.list[0] IN [0, 1] AND tags.arr = [1, 'two']")
	if err != nil {
		t.Fatal(err)
	}
	doc := map[string]any{"tags": map[string]any{"list": []any{1.0}, "arr": []any{1.0, "two"}}}
	if !c.Match(doc) {
		t.Error("array equality does not match")
	}
	doc["tags"].(map[string]any)["arr"] = []any{1.0, "three"}
	if c.Match(doc) {
		t.Error("different arrays match")
	}
}

func TestNumberTypes(t *testing.T) {
	c, err := ParseCondition("tags.n = 3 AND tags.j > 2 AND tags.i < 4")
	if err != nil {
		t.Fatal(err)
	}
	doc := map[string]any{"tags": map[string]any{"n": json.Number("3"), "j": int64(3), "i": 3}}
	if !c.Match(doc) {
		t.Error("json.Number, int64 and int are not compared as numbers")
	}
}

func TestProjections(t *testing.T) {
	q, err := Parse("SELECT deviceId, tags.location.region, properties.reported.telemetryConfig AS tc, tags.missing FROM devices WHERE deviceId = 'myDeviceId'")
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	for _, d := range fleet(t) {
		if q.Match(d) {
			rows = append(rows, q.Project(d))
		}
	}
	b, _ := json.Marshal(rows)
	want := `[{"deviceId":"myDeviceId","region":"US","tc":{"configId":"db00ebf5","sendFrequencyInSecs":300,"status":"Success"}}]`
	if string(b) != want {
		t.Errorf("rows %s\nwant %s", b, want)
	}
	var names []string
	for _, p := range q.Projections() {
		names = append(names, p.Name)
	}
	if got := strings.Join(names, ","); got != "deviceId,region,tc,missing" {
		t.Errorf("names %s", got)
	}
}

func aggregate(t *testing.T, text string) string {
	t.Helper()
	q, err := Parse(text)
	if err != nil {
		t.Fatalf("Parse(%q): %v", text, err)
	}
	if !q.Aggregated() {
		t.Fatalf("%q is not aggregated", text)
	}
	a := q.NewAggregation()
	for _, d := range fleet(t) {
		if q.Match(d) {
			a.Add(d)
		}
	}
	b, err := json.Marshal(a.Rows())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAggregations(t *testing.T) {
	for _, tc := range []struct{ q, want string }{
		{"SELECT COUNT() AS totalNumberOfDevices FROM devices", `[{"totalNumberOfDevices":4}]`},
		{"SELECT COUNT() FROM devices WHERE deviceId = 'nobody'", `[{"$1":0}]`},
		{"SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices FROM devices GROUP BY properties.reported.telemetryConfig.status",
			`[{"numberOfDevices":2,"status":"Success"},{"numberOfDevices":1,"status":"Pending"},{"numberOfDevices":1}]`},
		{"SELECT tags.location.region, COUNT() AS n FROM devices WHERE IS_DEFINED(tags.location) GROUP BY tags.location.region",
			`[{"n":1,"region":"US"},{"n":2,"region":"EU"}]`},
		{"SELECT SUM(properties.reported.x) AS s, AVG(properties.reported.x) AS a, MIN(properties.reported.x) AS lo, MAX(properties.reported.x) AS hi, COUNT() AS n FROM devices",
			`[{"a":3.5,"hi":"7","lo":2,"n":4,"s":7}]`},
		{"SELECT status, capabilities.iotEdge, COUNT() AS n FROM devices GROUP BY status, capabilities.iotEdge",
			`[{"iotEdge":false,"n":1,"status":"enabled"},{"iotEdge":true,"n":1,"status":"enabled"},{"iotEdge":true,"n":1,"status":"disabled"},{"n":1,"status":"enabled"}]`},
		{"SELECT AVG(tags.none) AS a, COUNT() AS n FROM devices", `[{"n":4}]`},
	} {
		if got := aggregate(t, tc.q); got != tc.want {
			t.Errorf("%s\n rows %s\n want %s", tc.q, got, tc.want)
		}
	}
	q, _ := Parse("SELECT TOP 3 deviceId FROM devices")
	if n, ok := q.Top(); !ok || n != 3 {
		t.Errorf("Top() = %d, %v", n, ok)
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		q   string
		pos int // 0-based
		msg string
	}{
		{"", 0, "expected SELECT"},
		{"SELECT", 6, "expected *, a property path"},
		{"SELECT * FORM devices", 9, `expected FROM`},
		{"SELECT * FROM things", 14, "expected devices or devices.modules"},
		{"SELECT * FROM devices.jobs", 22, "devices.jobs is not supported"},
		{"SELECT * FROM devices WHERE", 27, "expected an expression, found the end"},
		{"SELECT * FROM devices WHERE tags.x = 'abc", 37, "string is not closed"},
		{"SELECT * FROM devices WHERE tags.x == 'a'", 36, "expected an expression"},
		{"SELECT * FROM devices WHERE (tags.x = 1", 39, "expected ) to close the ( at position 29"},
		{"SELECT * FROM devices WHERE tags.x = 1 tags.y = 2", 39, "expected AND, OR, GROUP BY"},
		{"SELECT * FROM devices WHERE LOWER(deviceId) = 'a'", 28, "LOWER() is not supported in twin queries"},
		{"SELECT * FROM devices WHERE FOO(deviceId)", 28, "unknown function FOO()"},
		{"SELECT * FROM devices WHERE STARTSWITH(deviceId)", 28, "STARTSWITH() takes 2 arguments, not 1"},
		{"SELECT * FROM devices WHERE tags.x IN 'a'", 38, "expected [ after IN"},
		{"SELECT * FROM devices WHERE tags.x = 1 ORDER BY deviceId", 39, "ORDER BY is not supported"},
		{"SELECT * FROM devices WHERE tags.x && 1", 35, "use AND / OR"},
		{"SELECT * FROM devices WHERE tags.x = 'a\\q'", 39, `unknown escape \q`},
		{"SELECT * FROM devices WHERE tags.x = 12abc", 39, "in number 12"},
		{"SELECT *, deviceId FROM devices", 8, "expected FROM or ,"},
		{"SELECT deviceId, * FROM devices", 17, "* cannot be combined"},
		{"SELECT deviceId, COUNT() FROM devices", 7, "deviceId is neither an aggregate nor in GROUP BY"},
		{"SELECT status, COUNT() FROM devices GROUP BY", 44, "expected a property path to group by"},
		{"SELECT * FROM devices GROUP BY status", 22, "SELECT * cannot be grouped"},
		{"SELECT COUNT(deviceId) FROM devices", 13, "COUNT() takes no argument"},
		{"SELECT LOWER(deviceId) FROM devices", 7, "LOWER() is not an aggregate"},
		{"SELECT deviceId, tags.deviceId FROM devices", 17, "same name (deviceId) as item 1"},
		{"SELECT TOP x * FROM devices", 11, "expected a whole number after TOP"},
		{"SELECT * FROM devices WHERE COUNT() > 1", 28, "COUNT() belongs in the SELECT list"},
		{"SELECT * FROM devices WHERE tags.x = 1 AND", 42, "expected an expression"},
		{"SELECT * FROM devices WHERE tags.[0]", 33, "expected a property name after ."},
		{"SELECT * FROM devices WHERE " + strings.Repeat("(", 100) + "1" + strings.Repeat(")", 100), 28 + maxNesting, "nests more than"},
		{"SELECT * FROM devices WHERE deviceId = '" + strings.Repeat("x", MaxLength) + "'", MaxLength, "at most 8192"},
		{"SELECT * FROM devices WHERE deviceId = 'caf\xe9'", 43, "byte 0xe9 is not UTF-8"},
	} {
		wantParseError(t, tc.q, tc.pos, tc.msg)
	}
	if _, err := ParseCondition("  "); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty condition: %v", err)
	}
	if _, err := ParseCondition("tags.x = 1 )"); err == nil || err.(*Error).Pos != 11 {
		t.Errorf("trailing ): %v", err)
	}
}

// wantParseError checks that q does not parse, with an *Error at pos whose
// message contains msg.
func wantParseError(t *testing.T, q string, pos int, msg string) {
	t.Helper()
	_, err := Parse(q)
	var qe *Error
	if !errors.As(err, &qe) {
		t.Errorf("Parse(%.60q) = %v, want an *Error", q, err)
		return
	}
	if qe.Pos != pos || !strings.Contains(qe.Msg, msg) {
		t.Errorf("Parse(%.60q):\n got pos %d %q\nwant pos %d, containing %q", q, qe.Pos, qe.Msg, pos, msg)
	}
	if want := "position "; !strings.HasPrefix(qe.Error(), want) {
		t.Errorf("Error() = %q", qe.Error())
	}
}

func TestPaths(t *testing.T) {
	c, err := ParseCondition("tags.a = 1 AND STARTSWITH(properties.reported.b[2], 'x') OR deviceId IN [tags.c]")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"tags", "a"}, {"properties", "reported", "b", "2"}, {"deviceId"}, {"tags", "c"}}
	if got := c.Paths(); !reflect.DeepEqual(got, want) {
		t.Errorf("Paths() = %q, want %q", got, want)
	}
}

func TestQueryPaths(t *testing.T) {
	q, err := Parse("SELECT tags.a AS a, MAX(properties.reported.$metadata.x.$lastUpdated) AS m FROM devices WHERE status = 'enabled' GROUP BY tags.a")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"tags", "a"}, {"properties", "reported", "$metadata", "x", "$lastUpdated"}, {"status"}, {"tags", "a"}}
	if got := q.Paths(); !reflect.DeepEqual(got, want) {
		t.Errorf("Paths() = %q, want %q", got, want)
	}
}
