package broker

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
)

// TestOffline: with the hub stopped, a module connects, reads its cached
// twin and reports (each acknowledged once durable); the reports reach
// the hub, in order, once it is back, and a desired change made then
// reaches the module.
func TestOffline(t *testing.T) {
	f := setup(t, fixtureOptions{})
	addr := f.hub.Addr().String()
	f.desiredAtDevice(t, "a", `{"interval":5}`)
	f.hub.Stop()

	a := f.connectModule(t, "a")
	if d, _ := a.get(t); d["interval"] != 5.0 || d["$version"] != 2.0 {
		t.Fatalf("cached twin offline: %v", d)
	}
	for i, patch := range []string{`{"n":1,"at":"offline"}`, `{"n":2}`, `{"n":3}`} {
		topic, body := a.request(t, topicPatch, []byte(patch))
		if !strings.HasPrefix(topic, topicResponse+"204/") || !strings.HasSuffix(topic, "&$version="+string(rune('2'+i))) {
			t.Fatalf("patch %d offline answered on %s: %s", i+1, topic, body)
		}
	}
	st, err := f.syncer.Status()
	if err != nil || st.Outbox.Patches != 3 {
		t.Fatalf("outbox offline: %+v %v", st.Outbox, err)
	}

	h2 := hubtest.Start(t, hubtest.Options{DataDir: f.hubData, Listen: addr})
	owner := h2.Client(t)
	eventually(t, "the reports at the hub", func() bool {
		tw, err := owner.GetTwin(context.Background(), "d", "a")
		return err == nil && tw.Reported()["n"] == json.Number("3")
	})
	tw, _ := owner.GetTwin(context.Background(), "d", "a")
	if tw.Reported()["at"] != "offline" || tw.ReportedVersion() != 4 {
		t.Fatalf("hub twin after catching up: %s v%d", tw.ReportedJSON(), tw.ReportedVersion())
	}
	if _, err := owner.PatchTwin(context.Background(), "d", "a", []byte(`{"properties":{"desired":{"interval":6}}}`), ""); err != nil {
		t.Fatal(err)
	}
	topic, patch := a.nextDesired(t)
	if topic != desiredTopic(3) || patch["interval"] != 6.0 {
		t.Fatalf("desired after the hub came back: %s %v", topic, patch)
	}
}
