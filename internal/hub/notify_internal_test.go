package hub

import (
	"encoding/json"
	"testing"

	"github.com/outpost-edge/outpost/internal/hubapi"
)

// TestParentOfRecord: reading a device record's parent without decoding it
// finds what decoding it and asking hubapi.Device.ParentID finds.
func TestParentOfRecord(t *testing.T) {
	edge := hubapi.EdgeScope("edge-1", "638")
	for _, doc := range []string{
		`{"deviceId":"leaf","parentScopes":["` + edge + `"]}`,
		`{"deviceId":"leaf","parentScopes":["` + edge + `"],"capabilities":{"iotEdge":false},"deviceScope":"` + hubapi.EdgeScope("other", "1") + `"}`,
		`{"deviceId":"leaf","capabilities":{"iotEdge":false},"deviceScope":"` + edge + `"}`,
		`{"deviceId":"leaf","capabilities":{},"deviceScope":"` + edge + `"}`,
		`{"deviceId":"leaf","capabilities":{"iotEdge":null},"deviceScope":"` + edge + `"}`,
		`{"deviceId":"leaf", "capabilities" : { "iotEdge" : false } , "deviceScope" : "` + edge + `" }`,
		`{"deviceId":"edge-2","capabilities":{"iotEdge":true},"deviceScope":"` + edge + `"}`,
		`{"deviceId":"leaf","capabilities":null,"deviceScope":"` + edge + `"}`,
		`{"deviceId":"leaf","deviceScope":"` + edge + `"}`,
		`{"deviceId":"leaf","parentScopes":[],"capabilities":{"iotEdge":false},"deviceScope":"` + edge + `"}`,
		`{"deviceId":"leaf","parentScopes":null,"capabilities":{"iotEdge":false},"deviceScope":"` + edge + `"}`,
		`{"deviceId":"leaf","parentScopes":[null]}`,
		`{"deviceId":"leaf","parentScopes":["not a scope"]}`,
		`{"deviceId":"leaf","parentScopes":["ms-azure-iot-edge://edge\u002d1-638"]}`,
		`{"deviceId":"leaf","capabilities":{"iotEdge":false}}`,
		`{"deviceId":"leaf"}`,
		`{}`,
	} {
		var d hubapi.Device
		if err := json.Unmarshal([]byte(doc), &d); err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		if got, want := parentOfRecord([]byte(doc)), d.ParentID(); got != want {
			t.Errorf("parentOfRecord(%s) = %q, want %q", doc, got, want)
		}
	}
}
