package deployment

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestNativeRoutes(t *testing.T) {
	doc := `schemaVersion: "1.0"
modules:
  tempSensor: {image: "localhost:5000/tempsensor:1.0"}
  filter: {image: "localhost:5000/filter:1.0"}
routes:
  sensorToFilter: FROM /messages/modules/tempSensor/outputs/temperatureOutput INTO BrokeredEndpoint("/modules/filter/inputs/input1")
  filterToHub:
    route: FROM /messages/modules/filter/outputs/output1 WHERE alert = 'true' INTO $upstream
    priority: 1
    timeToLiveSecs: 600
`
	m, warnings, err := Parse([]byte(doc), "deployment.yaml")
	if err != nil || len(warnings) != 0 {
		t.Fatalf("Parse: %v, warnings %q", err, warnings)
	}
	var hub struct {
		SchemaVersion string                       `json:"schemaVersion"`
		Routes        map[string]json.RawMessage   `json:"routes"`
		SAF           struct{ TimeToLiveSecs int } `json:"storeAndForwardConfiguration"`
	}
	if err := json.Unmarshal(m.HubDesired(), &hub); err != nil {
		t.Fatal(err)
	}
	if len(hub.Routes) != 2 || hub.SAF.TimeToLiveSecs != DefaultTimeToLiveSecs || !strings.Contains(string(hub.Routes["filterToHub"]), `"priority":1`) {
		t.Fatalf("$edgeHub desired %s", m.HubDesired())
	}
}

// TestNativeStoreAndForward: a native manifest's storeAndForwardConfiguration
// sets $edgeHub's time to live, with or without routes; a bad one is an
// error naming its path and line.
func TestNativeStoreAndForward(t *testing.T) {
	for _, tt := range []struct {
		doc     string
		ttl     int
		nRoutes int
	}{
		{"schemaVersion: \"1.0\"\nmodules: {a: {image: \"x:1\"}}\nstoreAndForwardConfiguration: {timeToLiveSecs: 86400}\n", 86400, 0},
		{"schemaVersion: \"1.0\"\nmodules: {a: {image: \"x:1\"}}\nroutes: {r: FROM /messages/* INTO $upstream}\nstoreAndForwardConfiguration:\n  timeToLiveSecs: 0\n", 0, 1},
		{"schemaVersion: \"1.0\"\nmodules: {a: {image: \"x:1\"}}\nroutes: {r: FROM /messages/* INTO $upstream}\n", DefaultTimeToLiveSecs, 1},
	} {
		m, warnings, err := Parse([]byte(tt.doc), "deployment.yaml")
		if err != nil || len(warnings) != 0 {
			t.Fatalf("Parse(%q): %v, warnings %q", tt.doc, err, warnings)
		}
		var hub struct {
			Routes map[string]json.RawMessage    `json:"routes"`
			SAF    *struct{ TimeToLiveSecs int } `json:"storeAndForwardConfiguration"`
		}
		if err := json.Unmarshal(m.HubDesired(), &hub); err != nil {
			t.Fatal(err)
		}
		if hub.SAF == nil || hub.SAF.TimeToLiveSecs != tt.ttl || len(hub.Routes) != tt.nRoutes {
			t.Errorf("Parse(%q): $edgeHub desired %s, want timeToLiveSecs %d and %d routes", tt.doc, m.HubDesired(), tt.ttl, tt.nRoutes)
		}
	}
	for _, tt := range []struct{ doc, want string }{
		{"schemaVersion: \"1.0\"\nmodules: {}\nstoreAndForwardConfiguration: {timeToLiveSecs: -1}\n",
			"deployment.yaml:3: storeAndForwardConfiguration.timeToLiveSecs: -1 is not a whole number ≥ 0"},
		{"schemaVersion: \"1.0\"\nmodules: {}\nstoreAndForwardConfiguration: {ttl: 5}\n",
			"storeAndForwardConfiguration.ttl"},
	} {
		_, _, err := Parse([]byte(tt.doc), "deployment.yaml")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want %q", tt.doc, err, tt.want)
		}
	}
}

func TestRouteErrors(t *testing.T) {
	tests := []struct{ doc, want string }{
		{"schemaVersion: \"1.0\"\nmodules: {a: {image: \"x:1\"}}\nroutes:\n  r: FROM /messages/* WHERE $body.t > 1 INTO $upstream\n",
			"deployment.yaml:4: routes.r: column 24: $body.t: routing on the message body"},
		{`{"modulesContent": {"$edgeAgent": {"properties.desired": {"schemaVersion": "1.1", "modules": {}}}, "$edgeHub": {"properties.desired": {"schemaVersion": "1.1", "routes": {"r": "FROM /messages/* INTO nowhere"}}}}}`,
			"routes.r: column 23: sink \"nowhere\" is not supported"},
	}
	for _, tt := range tests {
		_, _, err := Parse([]byte(tt.doc), "deployment.yaml")
		var ve *ValidationError
		if !errors.As(err, &ve) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want %q", tt.doc, err, tt.want)
		}
	}
}

func TestRouteNamingUndeployedModuleWarns(t *testing.T) {
	for _, tt := range []struct{ doc, want string }{
		{"schemaVersion: \"1.0\"\nmodules: {a: {image: \"x:1\"}}\nroutes:\n  r: FROM /messages/modules/b/* INTO $upstream\n",
			`routes.r: route "r" names module "b", which the manifest does not deploy (its modules: [a])`},
		{"schemaVersion: \"1.0\"\nmodules: {a: {image: \"x:1\"}}\nroutes:\n  r: {route: 'FROM /messages/* INTO BrokeredEndpoint(\"/modules/c/inputs/i\")'}\n",
			`routes.r.route: route "r" names module "c"`},
	} {
		_, warnings, err := Parse([]byte(tt.doc), "deployment.yaml")
		if err != nil || len(warnings) != 1 || !strings.HasPrefix(warnings[0], tt.want) {
			t.Errorf("Parse(%q) = %v, warnings %q, want one starting %q", tt.doc, err, warnings, tt.want)
		}
	}
}
