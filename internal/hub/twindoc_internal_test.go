package hub

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/registry"
	"github.com/outpost-edge/outpost/internal/twin"
)

// TestTwinDocumentJSON: the twin answer written by hand is byte for byte
// what json.Marshal writes for the same document, including the strings,
// times and sections json escapes or reformats.
func TestTwinDocumentJSON(t *testing.T) {
	now := time.Date(2026, 12, 3, 7, 1, 2, 345678900, time.UTC)
	tw := twin.New("dev-1", "mod-1", now)
	if _, err := tw.Apply([]byte(`{"tags":{"site":"a<b>&c","line":"x\u2028y\u2029z","q":"\"\\\n\t","u":"héllo ☃ \ud83d\ude00","n":[1,2.5,-3e7,null,true],"o":{"deep":{"er":{}}}},"properties":{"desired":{"interval":5,"html":"</script>","sp":"a b  c"}}}`), now, false); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Apply([]byte(`{"properties":{"reported":{"r":"<&>"}}}`), now.Add(time.Second), true); err != nil {
		t.Fatal(err)
	}
	primary := "ab<>"
	docs := []twinDocument{
		{DeviceID: "dev-1", ModuleID: "mod-1", ETag: tw.ETag, Status: "enabled", Version: tw.Version, AuthenticationType: "sas",
			Tags: tw.SectionJSON(twin.Tags), Properties: tw.PropertiesJSON()},
		{DeviceID: "dev-2", ETag: "AAAAAAAAAAE=", DeviceETag: "x", Status: "disabled", StatusReason: "bad \"things\" <here> & \x01 \xff é",
			StatusUpdateTime: now, ConnectionState: "Connected", LastActivityTime: now.In(time.FixedZone("x", -(5*3600 + 30*60))),
			CloudToDeviceMessageCount: -7, AuthenticationType: "selfSigned", X509Thumbprint: x509Thumbprint{Primary: &primary},
			ModelID: "dtmi:x;1", Version: 1 << 40, Tags: json.RawMessage(`{}`), Properties: json.RawMessage(` { "a" : [ 1 , "b c" ] , "<" : "\u2028" } `),
			Capabilities: &registry.Capabilities{IoTEdge: true}, DeviceScope: "ms-azure-iot-edge://dev-2-1", ParentScopes: []string{"p1", "p<2>"}},
		{DeviceID: "dev-3", Capabilities: &registry.Capabilities{}, ParentScopes: []string{}, StatusUpdateTime: time.Unix(0, 1)},
	}
	for i, doc := range docs {
		want, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		got, err := doc.appendJSON([]byte("prefix"))
		if err != nil {
			t.Fatalf("doc %d: %v", i, err)
		}
		if !bytes.Equal(got, append([]byte("prefix"), want...)) {
			t.Errorf("doc %d:\n got %s\nwant prefix%s", i, got, want)
		}
	}
	// A time json refuses is refused here too.
	bad := twinDocument{LastActivityTime: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := json.Marshal(bad); err == nil {
		t.Fatal("json.Marshal took the year 10000")
	}
	if _, err := bad.appendJSON(nil); err == nil {
		t.Error("appendJSON took the year 10000")
	}
}
