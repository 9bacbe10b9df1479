package syncer

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/outpost-edge/outpost/internal/hubapi"
)

// TestLeafMethodThroughSyncer: a call the service makes to a leaf device
// (a child of the syncer's edge device d) comes to d's method handler with
// the leaf's id in DeviceID, and the handler's answer goes back to the
// caller; a call to a module of d still has no DeviceID.
func TestLeafMethodThroughSyncer(t *testing.T) {
	f := setup(t)
	owner := f.hub.Client(t)
	d, err := owner.GetDevice(t.Context(), "d")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := owner.CreateDevice(t.Context(), hubapi.Device{DeviceID: "sensor", Capabilities: &hubapi.Capabilities{}, DeviceScope: d.DeviceScope}); err != nil {
		t.Fatal(err)
	}
	s, _ := run(t, f, f.st)
	got := make(chan hubapi.MethodCall, 2)
	s.HandleMethods(func(_ context.Context, c hubapi.MethodCall) hubapi.MethodResponse {
		got <- c
		b, _ := json.Marshal(map[string]string{"device": c.DeviceID, "module": c.ModuleID})
		return hubapi.MethodResponse{Status: 200, Payload: b}
	})
	thirty := 30
	for _, tc := range []struct{ device, module, want string }{
		{"sensor", "", `{"device":"sensor","module":""}`},
		{"d", "a", `{"device":"","module":"a"}`},
	} {
		res, err := owner.InvokeMethod(t.Context(), tc.device, tc.module, hubapi.MethodRequest{MethodName: "blink", ConnectTimeoutInSeconds: &thirty})
		if err != nil {
			t.Fatalf("%s/%s: %v", tc.device, tc.module, err)
		}
		if c := <-got; c.Method != "blink" || res.Status != 200 || string(res.Payload) != tc.want {
			t.Fatalf("%s/%s: call %+v, result %d %s", tc.device, tc.module, c, res.Status, res.Payload)
		}
	}
}
