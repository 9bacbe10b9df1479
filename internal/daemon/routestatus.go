package daemon

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/outpost-edge/outpost/internal/agent"
	"github.com/outpost-edge/outpost/internal/route"
)

// routesStatus checks $edgeHub's routes as the broker reads them: 400 with
// the route's name and column when one does not parse, 400 when one names a
// module the deployment does not have (deployed nil: not known yet).
func routesStatus(hubDesired []byte, deployed map[string]bool) (int, string) {
	var d struct {
		Routes json.RawMessage `json:"routes"`
	}
	if err := json.Unmarshal(hubDesired, &d); err != nil {
		return http.StatusBadRequest, fmt.Sprintf("$edgeHub desired properties: %v", err)
	}
	routes, err := route.ParseJSON(d.Routes)
	if err != nil {
		return http.StatusBadRequest, err.Error() + "; no message is routed until the routes are fixed"
	}
	if deployed == nil {
		return http.StatusOK, ""
	}
	for _, r := range routes {
		for _, m := range []string{r.Source.Module, r.Sink.Module} {
			if m != "" && !deployed[m] {
				return http.StatusBadRequest, fmt.Sprintf("route %q names module %q, which the deployment does not have: deploy it or fix the route", r.Name, m)
			}
		}
	}
	return http.StatusOK, ""
}

// deployedModules is the modules of the deployment ($edgeAgent desired
// modules), nil when there is none yet.
func (r *hubReporter) deployedModules() map[string]bool {
	tw, err := r.sy.Twin(agent.AgentModule)
	if err != nil {
		return nil
	}
	var d struct {
		Modules map[string]json.RawMessage `json:"modules"`
	}
	if json.Unmarshal(tw.DesiredJSON(), &d) != nil || d.Modules == nil {
		return nil
	}
	out := map[string]bool{}
	for m := range d.Modules {
		out[m] = true
	}
	return out
}
