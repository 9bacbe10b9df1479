package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
)

func TestQuery(t *testing.T) {
	h := startHub(t, hubtest.Options{})
	ctx := context.Background()
	c := h.Client(t)
	for _, d := range []struct{ id, plant string }{{"a1", "Hannover01"}, {"a2", "Berlin"}, {"a3", "Hannover01"}} {
		if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: d.id}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.PatchTwin(ctx, d.id, "", []byte(`{"tags":{"location":{"plant":"`+d.plant+`"}}}`), ""); err != nil {
			t.Fatal(err)
		}
	}

	code, out, errOut := run(t, "query", "SELECT * FROM devices WHERE tags.location.plant = 'Hannover01'")
	if code != 0 || !strings.HasPrefix(out, "DEVICE   STATUS    DESIRED   REPORTED   TAGS\n") ||
		!strings.Contains(out, "\na1       enabled   v1        v1         {\"location\":{\"plant\":\"Hannover01\"}}\n") || strings.Contains(out, "a2") {
		t.Fatalf("query table: code %d\n%s%s", code, out, errOut)
	}
	code, out, _ = run(t, "query", "SELECT tags.location.plant AS plant, COUNT() AS n FROM devices GROUP BY tags.location.plant")
	if code != 0 || out != "PLANT        N\nHannover01   2\nBerlin       1\n" {
		t.Fatalf("GROUP BY table: code %d\n%s", code, out)
	}
	code, out, _ = run(t, "query", "SELECT deviceId, tags.none FROM devices.modules", "--max", "2", "-o", "json")
	var rows []map[string]string
	if err := json.Unmarshal([]byte(out), &rows); code != 0 || err != nil || len(rows) != 2 || rows[0]["deviceId"] != "a1" {
		t.Fatalf("--max 2 -o json: code %d, %v\n%s", code, err, out)
	}
	code, out, errOut = run(t, "query", "SELECT * FROM devices WHERE tags.x = 'nobody'")
	if code != 0 || out != "" || !strings.Contains(errOut, "no twins match") {
		t.Errorf("no match: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = run(t, "query", "SELECT * FROM devices WHERE tags.x = = 1")
	if code != ExitFailure || !strings.Contains(errOut, "position 38: expected an expression") ||
		!strings.Contains(errOut, "  SELECT * FROM devices WHERE tags.x = = 1\n                                       ^") {
		t.Errorf("parse error: code %d, stderr %q", code, errOut)
	}
	if code, _, errOut := run(t, "query", "SELECT * FROM devices", "--max", "-1"); code != ExitUsage || !strings.Contains(errOut, "--max") {
		t.Errorf("--max -1: code %d, stderr %q", code, errOut)
	}
}
