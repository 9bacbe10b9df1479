package query

import (
	"errors"
	"math"
	"testing"
)

// FuzzParse: no query makes Parse or evaluation panic; an error points
// inside the query; a condition's canonical form parses to itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"SELECT * FROM devices WHERE tags.location.region = 'US'",
		"SELECT * FROM devices.modules WHERE properties.reported.status = 'scanning' AND deviceId IN ['device1', 'device2']",
		"SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices FROM devices GROUP BY properties.reported.telemetryConfig.status",
		"SELECT TOP 2 deviceId, MIN(tags.n), MAX(tags.n), AVG(tags.n), SUM(tags.n) FROM devices",
		`select * from devices where NOT (is_defined(tags.x) or STARTSWITH(tags['a b'], "x\u0041")) and -tags.n * 2 % 3 <> 1.5e3`,
		"SELECT * FROM devices WHERE tags.list[1] NIN [null, true, undefined, [1, 2]]",
		"SELECT deviceId FROM devices.modules WHERE moduleId = '$edgeAgent' AND configurations.[[prod-1]].status = 'Applied'",
	} {
		f.Add(s)
	}
	docs := fleet(f)
	f.Fuzz(func(t *testing.T, s string) {
		q, err := Parse(s)
		if err != nil {
			var qe *Error
			if !errors.As(err, &qe) || qe.Pos < 0 || qe.Pos > len(s) {
				t.Fatalf("Parse(%q): error %v is not an *Error inside the query", s, err)
			}
			return
		}
		var agg *Aggregation
		if q.Aggregated() {
			agg = q.NewAggregation()
		}
		for _, d := range docs {
			if !q.Match(d) {
				continue
			}
			if agg != nil {
				agg.Add(d)
			} else {
				q.Project(d)
			}
		}
		if agg != nil {
			agg.Rows()
		}
		if w := q.Where(); w != nil {
			c, err := parseCondition(w.Canonical(), math.MaxInt)
			if err != nil {
				t.Fatalf("canonical form %q of %q: %v", w.Canonical(), s, err)
			}
			if c.Canonical() != w.Canonical() {
				t.Fatalf("canonical form %q of %q reparses as %q", w.Canonical(), s, c.Canonical())
			}
			for _, d := range docs {
				if c.Match(d) != w.Match(d) {
					t.Fatalf("canonical form %q of %q matches %v differently", w.Canonical(), s, d["deviceId"])
				}
			}
		}
	})
}
