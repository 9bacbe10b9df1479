package hub_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/registry"
)

// queryFleet makes devices d00…d(n-1), the even ones at plant Hannover01 and
// the odd ones at Berlin, each with a module "sensor" whose desired interval
// is the device's number.
func queryFleet(t *testing.T, c *hubclient.Client, n int) {
	t.Helper()
	for i := range n {
		plant := "Berlin"
		if i%2 == 0 {
			plant = "Hannover01"
		}
		createTwins(t, c, fmt.Sprintf("d%02d", i), plant, i)
	}
}

// createTwins makes device id with tags.location.plant and a module
// "sensor" whose desired interval is interval.
func createTwins(t *testing.T, c *hubclient.Client, id, plant string, interval int) {
	t.Helper()
	if _, err := c.CreateDevice(ctx, hubapi.Device{DeviceID: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PatchTwin(ctx, id, "", fmt.Appendf(nil, `{"tags":{"location":{"plant":%q}}}`, plant), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateModule(ctx, hubapi.Module{DeviceID: id, ModuleID: "sensor"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PatchTwin(ctx, id, "sensor", fmt.Appendf(nil, `{"properties":{"desired":{"interval":%d}}}`, interval), ""); err != nil {
		t.Fatal(err)
	}
}

// idsOf returns the deviceId (and /moduleId) of each item.
func idsOf(t *testing.T, items []json.RawMessage) string {
	t.Helper()
	var ids []string
	for _, it := range items {
		var doc struct{ DeviceID, ModuleID string }
		if err := json.Unmarshal(it, &doc); err != nil {
			t.Fatal(err)
		}
		if doc.ModuleID != "" {
			doc.DeviceID += "/" + doc.ModuleID
		}
		ids = append(ids, doc.DeviceID)
	}
	return strings.Join(ids, ",")
}

func TestQueryPagesThroughTwins(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)
	queryFleet(t, c, 12)

	const q = "SELECT * FROM devices WHERE tags.location.plant = 'Hannover01'"
	var all []json.RawMessage
	cont, pages := "", 0
	for {
		p, err := c.QueryPage(ctx, q, 4, cont)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(p.Items) > 4 || p.ItemType != "twin" {
			t.Fatalf("page %d: %d items of type %q", pages, len(p.Items), p.ItemType)
		}
		all = append(all, p.Items...)
		if cont = p.Continuation; cont == "" {
			break
		}
	}
	if got := idsOf(t, all); got != "d00,d02,d04,d06,d08,d10" || pages != 2 {
		t.Fatalf("%d pages of %s", pages, got)
	}
	// Each item is the twin as GET /twins returns it, with the device's capabilities.
	var item map[string]any
	if err := json.Unmarshal(all[1], &item); err != nil {
		t.Fatal(err)
	}
	tw, err := c.GetTwin(ctx, "d02", "")
	if err != nil {
		t.Fatal(err)
	}
	twJSON, _ := tw.MarshalJSON()
	var want map[string]any
	_ = json.Unmarshal(twJSON, &want)
	for k, v := range want {
		if fmt.Sprint(item[k]) != fmt.Sprint(v) {
			t.Errorf("query item %s = %v, GET /twins has %v", k, item[k], v)
		}
	}
	if fmt.Sprint(item["capabilities"]) != "map[iotEdge:true]" {
		t.Errorf("capabilities = %v", item["capabilities"])
	}

	// A write is in the next query's answer.
	if _, err := c.PatchTwin(ctx, "d03", "", []byte(`{"tags":{"location":{"plant":"Hannover01"}}}`), ""); err != nil {
		t.Fatal(err)
	}
	items, _, err := c.Query(ctx, q, 0)
	if err != nil || idsOf(t, items) != "d00,d02,d03,d04,d06,d08,d10" {
		t.Fatalf("after moving d03: %s, %v", idsOf(t, items), err)
	}
	// A deleted device is gone from it, modules too.
	if err := c.DeleteDevice(ctx, "d04", ""); err != nil {
		t.Fatal(err)
	}
	items, _, err = c.Query(ctx, q, 0)
	if err != nil || idsOf(t, items) != "d00,d02,d03,d06,d08,d10" {
		t.Fatalf("after deleting d04: %s, %v", idsOf(t, items), err)
	}

	// Module twins, with the system module of each device.
	items, _, err = c.Query(ctx, "SELECT * FROM devices.modules WHERE properties.desired.interval >= 9 OR moduleId = '"+registry.AgentModule+"' AND deviceId IN ['d00', 'd01']", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := idsOf(t, items), "d00/"+registry.AgentModule+",d01/"+registry.AgentModule+",d09/sensor,d10/sensor,d11/sensor"; got != want {
		t.Fatalf("module query: %s, want %s", got, want)
	}
	// TOP across pages.
	items, _, err = c.Query(ctx, "SELECT TOP 5 * FROM devices.modules", 0)
	if err != nil || len(items) != 5 {
		t.Fatalf("TOP 5: %d items, %v", len(items), err)
	}
	p, err := c.QueryPage(ctx, "SELECT TOP 3 deviceId FROM devices", 2, "")
	if err != nil || len(p.Items) != 2 || p.Continuation == "" {
		t.Fatalf("TOP 3, page 1: %v", err)
	}
	p, err = c.QueryPage(ctx, "SELECT TOP 3 deviceId FROM devices", 2, p.Continuation)
	if err != nil || string(p.Items[0]) != `{"deviceId":"d02"}` || len(p.Items) != 1 || p.Continuation != "" {
		t.Fatalf("TOP 3, page 2: %s, %v", p.Items, err)
	}
}

func TestQueryProjectionsAndAggregates(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)
	queryFleet(t, c, 5)

	p, err := c.QueryPage(ctx, "SELECT deviceId, tags.location.plant AS plant, tags.none FROM devices WHERE deviceId = 'd03'", 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 1 || string(p.Items[0]) != `{"deviceId":"d03","plant":"Berlin"}` || p.ItemType != "raw" || p.Continuation != "" {
		t.Fatalf("projection: %s type %q", p.Items, p.ItemType)
	}
	items, typ, err := c.Query(ctx, "SELECT tags.location.plant AS plant, COUNT() AS n FROM devices GROUP BY tags.location.plant", 0)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(items)
	if string(got) != `[{"n":3,"plant":"Hannover01"},{"n":2,"plant":"Berlin"}]` || typ != "raw" {
		t.Fatalf("GROUP BY: %s (%s)", got, typ)
	}
	// Aggregated rows page too.
	p, err = c.QueryPage(ctx, "SELECT tags.location.plant AS plant, COUNT() AS n FROM devices GROUP BY tags.location.plant", 1, "")
	if err != nil || len(p.Items) != 1 || p.Continuation == "" {
		t.Fatalf("GROUP BY, page 1: %s, %v", p.Items, err)
	}
	items, _, err = c.Query(ctx, "SELECT COUNT() AS modules, SUM(properties.desired.interval) AS s FROM devices.modules WHERE moduleId = 'sensor'", 0)
	if got, _ := json.Marshal(items); err != nil || string(got) != `[{"modules":5,"s":10}]` {
		t.Fatalf("COUNT and SUM: %s, %v", got, err)
	}
}

func TestQueryErrors(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	c := h.Client(t)
	queryFleet(t, c, 3)
	var he *hubclient.Error

	_, err := c.QueryPage(ctx, "SELECT * FROM devices WHERE tags.x = = 1", 0, "")
	if !errors.As(err, &he) || he.StatusCode != 400 || !strings.Contains(he.Message, "position 38: expected an expression") ||
		!strings.Contains(he.Message, "tags.x = ⟨here⟩= 1") {
		t.Fatalf("parse error: %v", err)
	}
	_, err = c.QueryPage(ctx, "SELECT * FROM devices", 0, "bm90IGEgdG9rZW4.abc")
	if !errors.As(err, &he) || he.StatusCode != 400 || !strings.Contains(he.Message, "x-ms-continuation") {
		t.Fatalf("forged continuation: %v", err)
	}
	// A token is for the query that made it only.
	p, err := c.QueryPage(ctx, "SELECT * FROM devices", 1, "")
	if err != nil || p.Continuation == "" {
		t.Fatal(err)
	}
	_, err = c.QueryPage(ctx, "SELECT * FROM devices.modules", 1, p.Continuation)
	if !errors.As(err, &he) || he.StatusCode != 400 {
		t.Fatalf("continuation of another query: %v", err)
	}
	owner, err := identity.ParseConnectionString(h.ConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := owner.Token(time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"sql": "SELECT * FROM devices"}`, `{\"query\": \"SELECT`},
		{`["SELECT * FROM devices"]`, `{\"query\": \"SELECT`},
		{`{"query": "SELECT * FROM devices WHERE LOWER(deviceId) = 'd00'"}`, "LOWER() is not supported in twin queries"},
	} {
		if status, body := h.Request(t, http.MethodPost, "/devices/query", auth, "", []byte(tc.body)); status != 400 || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s", tc.body, status, body)
		}
	}
	for _, size := range []string{"0", "ten", "-1"} {
		hc := &http.Client{Transport: headerTransport{"x-ms-max-item-count", size, h.CAFile}}
		bc, err := hubclient.New(h.ConnectionString, h.CAFile, hubclient.WithHTTPClient(hc))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bc.QueryPage(ctx, "SELECT * FROM devices", 0, ""); !errors.As(err, &he) || he.StatusCode != 400 || !strings.Contains(he.Message, "x-ms-max-item-count") {
			t.Errorf("x-ms-max-item-count %q: %v", size, err)
		}
	}
	// Devices may not query.
	d, err := c.GetDevice(ctx, "d00")
	if err != nil {
		t.Fatal(err)
	}
	dc := h.ClientFor(t, h.DeviceConnectionString("d00", "", d.Authentication.SymmetricKey.PrimaryKey))
	if _, err := dc.QueryPage(ctx, "SELECT * FROM devices", 0, ""); !errors.As(err, &he) || he.StatusCode/100 != 4 {
		t.Fatalf("device query: %v", err)
	}
}

// headerTransport sets a header on each request, trusting the CA in caFile.
type headerTransport struct{ name, value, caFile string }

func (h headerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	pem, err := os.ReadFile(h.caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	req = req.Clone(req.Context())
	req.Header.Set(h.name, h.value)
	t := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer t.CloseIdleConnections()
	return t.RoundTrip(req)
}

// TestQueryConnectionState: IoT Hub's most asked roll-up, devices by
// connectionState, follows the devices' syncs (memory, not records), and a
// twin in a query's result says it as GET /twins does.
func TestQueryConnectionState(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{PresenceGrace: time.Hour})
	c := h.Client(t)
	queryFleet(t, c, 3)
	const count = "SELECT COUNT() AS n FROM devices WHERE connectionState = 'Connected'"
	if items, _, err := c.Query(ctx, count, 0); err != nil || string(items[0]) != `{"n":0}` {
		t.Fatalf("%s before any sync: %s, %v", count, items, err)
	}
	d, err := c.GetDevice(ctx, "d01")
	if err != nil {
		t.Fatal(err)
	}
	dev := h.ClientFor(t, h.DeviceConnectionString("d01", "", d.Authentication.SymmetricKey.PrimaryKey))
	if _, err := dev.Sync(ctx, "d01", "", 0); err != nil {
		t.Fatal(err)
	}
	if items, _, err := c.Query(ctx, count, 0); err != nil || string(items[0]) != `{"n":1}` {
		t.Fatalf("%s after d01 synced: %s, %v", count, items, err)
	}
	items, _, err := c.Query(ctx, "SELECT * FROM devices.modules WHERE deviceId = 'd01' AND connectionState = 'Connected'", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := idsOf(t, items); got != "d01/$edgeAgent,d01/$edgeHub" {
		t.Fatalf("connected modules of d01: %s, want its system modules (the daemon)", got)
	}
	items, _, err = c.Query(ctx, "SELECT * FROM devices WHERE deviceId IN ['d00', 'd01']", 0)
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, it := range items {
		var doc struct{ ConnectionState string }
		if err := json.Unmarshal(it, &doc); err != nil {
			t.Fatal(err)
		}
		states = append(states, doc.ConnectionState)
	}
	if strings.Join(states, ",") != "Disconnected,Connected" {
		t.Fatalf("connectionState of d00, d01 in SELECT *: %v", states)
	}
}
