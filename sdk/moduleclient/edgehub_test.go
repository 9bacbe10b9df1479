package moduleclient_test

import (
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
)

// TestEdgeHubReportsClients: a module connecting to the daemon's broker
// shows in the $edgeHub twin's reported clients at the hub, as IoT Edge's
// hub reports them, and shows disconnected once it has gone, keeping the
// time it connected.
func TestEdgeHubReportsClients(t *testing.T) {
	d := newDevice(t)
	key := d.f.DeviceID + "/" + d.module
	client := func() map[string]any {
		tw, err := d.f.Owner.GetTwin(t.Context(), d.f.DeviceID, "$edgeHub")
		if err != nil {
			t.Fatal(err)
		}
		clients, _ := tw.Reported()["clients"].(map[string]any)
		c, _ := clients[key].(map[string]any)
		return c
	}
	c := d.connect(t)
	agenttest.Eventually(t, 30*time.Second, key+" connected in $edgeHub's reported clients", func() bool {
		return client()["status"] == "Connected"
	})
	connectedAt, _ := client()["lastConnectedTimeUtc"].(string)
	if _, err := time.Parse(time.RFC3339Nano, connectedAt); err != nil {
		t.Errorf("lastConnectedTimeUtc %q: %v", connectedAt, err)
	}
	c.Close()
	agenttest.Eventually(t, 30*time.Second, key+" disconnected in $edgeHub's reported clients", func() bool {
		return client()["status"] == "Disconnected"
	})
	got := client()
	if got["lastConnectedTimeUtc"] != connectedAt || got["lastDisconnectedTimeUtc"] == nil {
		t.Errorf("after the disconnect: %v (connected at %s)", got, connectedAt)
	}
	tw, err := d.f.Owner.GetTwin(t.Context(), d.f.DeviceID, "$edgeHub")
	if err != nil {
		t.Fatal(err)
	}
	rep := tw.Reported()
	if rep["schemaVersion"] != "1.0" || rep["version"] == nil || rep["lastDesiredVersion"] == nil {
		t.Errorf("$edgeHub reported: %s", tw.ReportedJSON())
	}
	if st, _ := rep["lastDesiredStatus"].(map[string]any); st["code"] == nil {
		t.Errorf("$edgeHub lastDesiredStatus: %s", tw.ReportedJSON())
	}
}
