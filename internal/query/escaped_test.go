package query

import (
	"encoding/json"
	"strings"
	"testing"
)

// IoT Hub's escaped property names: configurations.[[id]] names the key id
// as it is, characters a plain name cannot have among them (as in the
// metric queries of IoT Hub's automatic device management docs).
func TestEscapedNames(t *testing.T) {
	agent := func(dev string, cfgs string) map[string]any {
		var c map[string]any
		if err := json.Unmarshal([]byte(cfgs), &c); err != nil {
			t.Fatal(err)
		}
		return map[string]any{"deviceId": dev, "moduleId": "$edgeAgent", "configurations": c}
	}
	twins := []map[string]any{
		agent("a", `{"prod-base": {"status": "Applied"}, "layer:1": {"status": "Targeted"}}`),
		agent("b", `{"prod-base": {"status": "Targeted"}, "layer:1": {"status": "Applied"}}`),
		{"deviceId": "c", "moduleId": "$edgeAgent"},
		{"deviceId": "c", "moduleId": "other", "configurations": map[string]any{"prod-base": map[string]any{"status": "Applied"}}},
	}
	for _, tc := range []struct{ q, want string }{
		{"SELECT deviceId FROM devices.modules WHERE moduleId='$edgeAgent' AND configurations.[[prod-base]].status='Applied'", "a"},
		{"SELECT * FROM devices.modules WHERE configurations.[[prod-base]].status = 'Applied'", "a,c"},
		{"select deviceid from devices.modules where configurations.[[layer:1]].status = 'Applied'", "b"},
		{"SELECT * FROM devices.modules WHERE IS_DEFINED(configurations.[[layer:1]])", "a,b"},
		{"SELECT * FROM devices.modules WHERE configurations.[[ prod-base ]].status = 'Applied'", ""}, // spaces are part of the name
		{"SELECT * FROM devices.modules WHERE configurations.[[x]].status = 'Applied' OR configurations.[[layer:1]].status='Targeted'", "a"},
		{"SELECT * FROM devices.modules WHERE configurations['prod-base'].status = 'Targeted'", "b"}, // the same key, bracket-quoted
	} {
		q, err := Parse(tc.q)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.q, err)
			continue
		}
		var ids []string
		for _, d := range twins {
			if q.Match(d) {
				ids = append(ids, d["deviceId"].(string))
			}
		}
		if got := strings.Join(ids, ","); got != tc.want {
			t.Errorf("%s\n matched %q, want %q", tc.q, got, tc.want)
		}
	}

	q, err := Parse("SELECT deviceId, configurations.[[prod-base]].status AS s FROM devices.modules WHERE deviceId = 'b'")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(q.Project(twins[1])); string(b) != `{"deviceId":"b","s":"Targeted"}` {
		t.Errorf("projection %s", b)
	}
	c, err := ParseCondition("configurations.[[a.b-c]].status = 'Applied'")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Paths(); len(got) != 1 || strings.Join(got[0], "|") != "configurations|a.b-c|status" {
		t.Errorf("Paths() = %q", got)
	}

	for _, tc := range []struct {
		q   string
		pos int
		msg string
	}{
		{"SELECT * FROM devices WHERE configurations.[[prod.status = 'Applied'", 43, "[[ is not closed: end it with ]]"},
		{"SELECT * FROM devices WHERE configurations.[[]].status = 'Applied'", 43, "[[]] is empty"},
		{"SELECT * FROM devices WHERE configurations.[[a]]x = 1", 48, `expected AND, OR`},
	} {
		wantParseError(t, tc.q, tc.pos, tc.msg)
	}
}
