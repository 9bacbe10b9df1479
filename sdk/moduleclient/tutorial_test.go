package moduleclient_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/agent/agenttest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/sdk/moduleclient"
)

// TestIoTEdgeTutorialManifest deploys an IoT Edge deployment manifest in the
// shape of Microsoft's "develop a module" tutorial — a simulated temperature
// sensor whose readings go through a route to a filter module, which sends
// the hot ones on to the hub — and checks that its messages flow: the
// readings reach the filter's input1 from tempSensor's temperatureOutput,
// and only the filter's alerts reach the hub.
func TestIoTEdgeTutorialManifest(t *testing.T) {
	sensor, l := newFixtureWith(t, "tempSensor", func(f *agenttest.Fixture, _ string) map[string]any {
		return map[string]any{"image": f.Image, "restartPolicy": "always"}
	})
	f := sensor.f
	fm, err := f.Owner.CreateModule(t.Context(), hubapi.Module{DeviceID: f.DeviceID, ModuleID: "filtermodule"})
	if err != nil {
		t.Fatal(err)
	}
	f.DeployManifest(t, agenttest.IoTEdgeManifest(
		map[string]any{"tempSensor": agenttest.IoTEdgeModule(f.Image), "filtermodule": agenttest.IoTEdgeModule(f.Image)},
		map[string]any{
			"FilterModuleToIoTHub": "FROM /messages/modules/filtermodule/outputs/* INTO $upstream",
			"sensorToFilterModule": map[string]any{
				"route":          `FROM /messages/modules/tempSensor/outputs/temperatureOutput INTO BrokeredEndpoint("/modules/filtermodule/inputs/input1")`,
				"priority":       0,
				"timeToLiveSecs": 86400,
			},
		}))
	sensor.start(t, l)
	agenttest.Eventually(t, 60*time.Second, "$edgeHub's routes taken (lastDesiredStatus 200)", func() bool { return f.RoutesInForce(t) })

	// The filter module, as the tutorial writes it: a reading whose machine
	// temperature is over the threshold goes on output1, marked as an alert.
	filter := *sensor
	filter.module, filter.genID = "filtermodule", fm.GenerationID
	fc := filter.connect(t)
	readings := make(chan moduleclient.Message, 16)
	if err := fc.OnInput("input1", func(m moduleclient.Message) { readings <- m }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	filtered := make(chan error, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				filtered <- nil
				return
			case m := <-readings:
				var r struct {
					Machine struct{ Temperature float64 } `json:"machine"`
				}
				if err := json.Unmarshal(m.Body, &r); err != nil {
					filtered <- fmt.Errorf("filter: reading %q: %v", m.Body, err)
					return
				}
				if m.ConnectionModuleID != "tempSensor" || m.OutputName != "temperatureOutput" || m.Input != "input1" {
					filtered <- fmt.Errorf("filter: reading from %q on %q to %q", m.ConnectionModuleID, m.OutputName, m.Input)
					return
				}
				if r.Machine.Temperature <= 25 {
					continue
				}
				alert := moduleclient.Message{Body: m.Body, ContentType: "application/json", ContentEncoding: "utf-8",
					MessageID: m.MessageID, Properties: map[string]string{"MessageType": "Alert"}}
				if err := fc.SendOutput(ctx, "output1", alert); err != nil {
					filtered <- err
					return
				}
			}
		}
	}()

	// The sensor: SimulatedTemperatureSensor's readings on temperatureOutput.
	sc := sensor.connect(t)
	temps := []float64{21.5, 26.1, 22.0, 27.3, 20.8, 30.2}
	for i, temp := range temps {
		body, _ := json.Marshal(map[string]any{
			"machine":     map[string]any{"temperature": temp, "pressure": 1.2},
			"ambient":     map[string]any{"temperature": 21.0, "humidity": 25},
			"timeCreated": time.Date(2026, 12, 3, 7, 0, i, 0, time.UTC).Format(time.RFC3339),
		})
		msg := moduleclient.Message{Body: body, MessageID: fmt.Sprintf("r%d", i), ContentType: "application/json", ContentEncoding: "utf-8"}
		if err := sc.SendOutput(t.Context(), "temperatureOutput", msg); err != nil {
			t.Fatal(err)
		}
	}

	want := []string{"r1", "r3", "r5"}
	agenttest.Eventually(t, 60*time.Second, "the three alerts at the hub", func() bool {
		select {
		case err := <-filtered:
			t.Fatal(err)
		default:
		}
		return len(sensor.hubMessages(t)) >= len(want)
	})
	hm := sensor.hubMessages(t)
	if len(hm) != len(want) {
		t.Fatalf("%d messages at the hub, want the %d alerts: %+v", len(hm), len(want), hm)
	}
	for i, m := range hm {
		if m.ModuleID != "filtermodule" || m.OutputName != "output1" || m.Properties["MessageType"] != "Alert" || m.SystemProperties["$.mid"] != want[i] {
			t.Fatalf("message %d at the hub: %+v, want alert %s from filtermodule's output1", i, m, want[i])
		}
	}
}
