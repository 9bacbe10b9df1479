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
