package registry

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/twin"
)

// TestConfigurationContentThatDoesNotFit: a device or module configuration
// whose content does not fit the twin it targets (its desired properties
// would pass 32 KiB) stays "Targeted" there, the twin unchanged, saying
// why in the twin's state; once the twin has room it is applied.
func TestConfigurationContentThatDoesNotFit(t *testing.T) {
	for _, tc := range []struct{ kind, module string }{{"device", ""}, {"module", "sensor"}} {
		t.Run(tc.kind, func(t *testing.T) {
			r, _ := newRegistry(t)
			deviceWithTags(t, r, "d1", `{"kind":"x"}`)
			content := json.RawMessage(`{"properties.desired.extra": "` + strings.Repeat("e", 3000) + `"}`)
			c := Configuration{ID: "big", Priority: 1}
			if tc.module == "" {
				c.TargetCondition, c.Content.DeviceContent = "tags.kind = 'x'", content
			} else {
				moduleWithTags(t, r, "d1", tc.module, `{"kind":"x"}`)
				c.TargetCondition, c.Content.ModuleContent = "FROM devices.modules WHERE tags.kind = 'x'", content
			}
			mustCreateConfig(t, r, c)

			fill, free := map[string]any{}, map[string]any{}
			for i := range 8 {
				fill[fmt.Sprint("fill", i)], free[fmt.Sprint("fill", i)] = strings.Repeat("f", 3900), nil
			}
			patch := func(v map[string]any) {
				t.Helper()
				if _, err := r.UpdateTwin("d1", tc.module, "", func(tw *twin.Twin) (bool, error) {
					return tw.PatchDesired([]byte(jsonOf(v)), time.Now())
				}); err != nil {
					t.Fatal(err)
				}
			}
			patch(fill)

			a := r.NewAutoDeployer(nil)
			a.loadAll(t)
			evaluate := func() (statuses map[string]string, stateErr string) {
				t.Helper()
				if tc.module == "" {
					if err := a.Evaluate("d1"); err != nil {
						t.Fatal(err)
					}
					s, _, err := r.deployState("d1")
					if err != nil {
						t.Fatal(err)
					}
					return deviceStatuses(t, r, "d1"), s.DeviceError
				}
				if err := a.EvaluateModule("d1", tc.module); err != nil {
					t.Fatal(err)
				}
				s, _, err := r.moduleState("d1", tc.module)
				if err != nil {
					t.Fatal(err)
				}
				return moduleStatuses(t, r, "d1", tc.module), s.Error
			}

			got, why := evaluate()
			if !sameStatuses(got, "big", hubapi.ConfigurationTargeted) {
				t.Errorf("configurations of a twin without room %v, want big Targeted", got)
			}
			if want := tc.kind + " configuration big: "; !strings.HasPrefix(why, want) {
				t.Errorf("the state says %q, want it to start %q", why, want)
			}
			if d := moduleDesired(t, r, "d1", tc.module); d["extra"] != nil {
				t.Fatal("the content was written past the twin's limit")
			}

			patch(free)
			got, why = evaluate()
			if !sameStatuses(got, "big", hubapi.ConfigurationApplied) || why != "" {
				t.Errorf("with room: configurations %v, error %q; want big Applied, no error", got, why)
			}
			if d := moduleDesired(t, r, "d1", tc.module); d["extra"] != strings.Repeat("e", 3000) {
				t.Errorf("with room the content was not written: %v", d)
			}
		})
	}
}
