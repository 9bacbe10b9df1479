package broker

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
)

// TestLeafMessagesRoutedAsIoTEdgeDoes: a leaf device's message (no module)
// is taken by FROM /messages/* and by a route selecting
// NOT IS_DEFINED($connectionModuleId), with $connectionDeviceId the leaf's
// id, and by no /messages/modules/… route; a module's message is not taken
// by the leaf-only route.
func TestLeafMessagesRoutedAsIoTEdgeDoes(t *testing.T) {
	rt, err := parseHubDesired([]byte(`{"routes": {
		"leaves":  "FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO BrokeredEndpoint(\"/modules/leafin/inputs/in\")",
		"sensor1": "FROM /messages/* WHERE $connectionDeviceId = 'sensor1' INTO BrokeredEndpoint(\"/modules/s1/inputs/in\")",
		"all":     "FROM /messages/* INTO $upstream",
		"modA":    "FROM /messages/modules/a/* INTO BrokeredEndpoint(\"/modules/froma/inputs/in\")",
		"anyOut":  "FROM /messages/modules/a/outputs/* INTO BrokeredEndpoint(\"/modules/fromaout/inputs/in\")"
	}}`))
	if err != nil {
		t.Fatal(err)
	}
	b := &Broker{}
	b.msg.routing.Store(rt)
	names := func(m hubapi.Message) []string {
		var out []string
		for _, d := range b.route(&m, time.Now()) {
			out = append(out, d.Name)
		}
		slices.Sort(out)
		return out
	}
	leaf := hubapi.Message{DeviceID: "sensor1", Properties: map[string]string{"t": "1"}}
	if got, want := names(leaf), []string{InputDest("leafin", "in"), InputDest("s1", "in"), UpstreamDest}; !slices.Equal(got, want) {
		t.Errorf("leaf sensor1's message: %q, want %q", got, want)
	}
	other := hubapi.Message{DeviceID: "sensor2"}
	if got, want := names(other), []string{InputDest("leafin", "in"), UpstreamDest}; !slices.Equal(got, want) {
		t.Errorf("leaf sensor2's message: %q, want %q", got, want)
	}
	module := hubapi.Message{DeviceID: "edge", ModuleID: "a", OutputName: "o", SystemProperties: map[string]string{"$.on": "o"}}
	if got, want := names(module), []string{InputDest("froma", "in"), InputDest("fromaout", "in"), UpstreamDest}; !slices.Equal(got, want) {
		t.Errorf("module a's message: %q, want %q", got, want)
	}
}

func TestLeafEventsTopic(t *testing.T) {
	for _, tc := range []struct{ topic, bag, err string }{
		{"devices/s1/messages/events/", "", ""},
		{"devices/s1/messages/events/a=1&%24.ct=application%2Fjson", "a=1&%24.ct=application%2Fjson", ""},
		{"devices/s1/messages/events/a=1/", "a=1", ""},
		{"devices/s2/messages/events/", "", `topic "devices/s2/messages/events/" is not this device's: a leaf device publishes telemetry on devices/s1/messages/events/{property bag}`},
		{"devices/s1/modules/m/messages/events/", "", `is not this device's`},
		{"devices/edge/modules/m/inputs/in/", "", `is not this device's`},
	} {
		bag, err := leafEventsTopic("s1", tc.topic)
		if tc.err == "" && (err != nil || bag != tc.bag) || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: %q, %v", tc.topic, bag, err)
		}
	}
}
