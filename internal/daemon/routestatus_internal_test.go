package daemon

import (
	"strings"
	"testing"
)

func TestRoutesStatus(t *testing.T) {
	deployed := map[string]bool{"tempSensor": true, "filter": true}
	tests := []struct {
		desired string
		code    int
		want    string
	}{
		{`{"routes": {"up": "FROM /messages/modules/filter/outputs/output1 INTO $upstream", "s2f": {"route": "FROM /messages/modules/tempSensor/outputs/temperatureOutput INTO BrokeredEndpoint(\"/modules/filter/inputs/input1\")", "priority": 0, "timeToLiveSecs": 86400}}}`, 200, ""},
		{`{"routes": {}}`, 200, ""},
		{`{"routes": {"bad": "FROM /messages/* WHERE $body.x > 1 INTO $upstream"}}`, 400, `route "bad", column 24`},
		{`{"routes": {"ghost": "FROM /messages/modules/nosuch/* INTO $upstream"}}`, 400, `route "ghost" names module "nosuch"`},
		{`{"routes": {"ghost": "FROM /messages/* INTO BrokeredEndpoint(\"/modules/nosuch/inputs/i\")"}}`, 400, `"nosuch", which the deployment does not have`},
	}
	for _, tt := range tests {
		code, desc := routesStatus([]byte(tt.desired), deployed)
		if code != tt.code || !strings.Contains(desc, tt.want) {
			t.Errorf("routesStatus(%s) = %d %q, want %d %q", tt.desired, code, desc, tt.code, tt.want)
		}
	}
	if code, _ := routesStatus([]byte(`{"routes": {"r": "FROM /messages/modules/nosuch/* INTO $upstream"}}`), nil); code != 200 {
		t.Errorf("without a deployment yet: %d, want 200", code)
	}
}
