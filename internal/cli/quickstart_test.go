package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/registry"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

func TestQuickstart(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", "")
	dir := t.TempDir()
	for round := 1; round <= 2; round++ { // a second run picks up where the first left off
		code, out, errOut := run(t, "quickstart", "--data", dir, "-o", "json")
		if code != 0 {
			t.Fatalf("round %d: code %d, stderr %s", round, code, errOut)
		}
		var res quickstartResult
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("round %d: output is not JSON: %v\n%s", round, err, out)
		}
		var tw twin.Twin
		if err := tw.UnmarshalJSON(res.Twin); err != nil {
			t.Fatal(err)
		}
		if tw.Desired()["interval"] != json.Number("5") || tw.Reported()["temperature"] != json.Number("21.5") {
			t.Fatalf("round %d: twin %s", round, res.Twin)
		}
		if tw.DesiredVersion() != 2 || tw.ReportedVersion() != 2 {
			t.Fatalf("round %d: versions %d/%d: a repeated patch must not bump them", round, tw.DesiredVersion(), tw.ReportedVersion())
		}
		if !strings.Contains(errOut, "module identity /devices/quickstart-device/modules/tempsensor") {
			t.Errorf("round %d: status lines missing: %s", round, errOut)
		}

		// The token verifies with the module's own key, as the hub will check it.
		st, err := store.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		mod, err := registry.New(st).GetModule("quickstart-device", "tempsensor")
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		sas, err := identity.ParseSAS(res.Token)
		if err != nil {
			t.Fatal(err)
		}
		resource := identity.ModuleResource("localhost", "quickstart-device", "tempsensor")
		if err := sas.Verify(resource, time.Now(), mod.Authentication.SymmetricKey.PrimaryKey); err != nil {
			t.Fatalf("token does not verify: %v", err)
		}
	}
}
