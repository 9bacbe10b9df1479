package hub

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/deployment"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/registry"
	"github.com/outpost-edge/outpost/internal/twin"
)

// handler serves one route for an authenticated principal. Its error is
// mapped to a status and IoT Hub's error code by wrap.
type handler func(w http.ResponseWriter, r *http.Request, p principal) error

// Handler is the hub's HTTP API: IoT Hub's service REST subset and the
// device sync endpoints.
func (h *Hub) Handler() http.Handler {
	mux := http.NewServeMux()
	route := func(pattern, kind string, fn handler) {
		mux.Handle(pattern, h.wrap(kind, fn, 0))
	}
	route("GET /devices", "Device", h.listDevices)
	route("GET /devices/{$}", "Device", h.listDevices) // the Node SDK lists with a trailing slash
	route("PUT /devices/{id}", "Device", h.putDevice)
	route("GET /devices/{id}", "Device", h.getDevice)
	route("DELETE /devices/{id}", "Device", h.deleteDevice)
	route("GET /devices/{id}/modules", "Module", h.listModules)
	route("PUT /devices/{id}/modules/{mid}", "Module", h.putModule)
	route("GET /devices/{id}/modules/{mid}", "Module", h.getModule)
	route("DELETE /devices/{id}/modules/{mid}", "Module", h.deleteModule)
	route("GET /twins/{id}", "Device", h.getTwin)
	route("PATCH /twins/{id}", "Device", h.patchTwin)
	route("GET /twins/{id}/modules/{mid}", "Module", h.getTwin)
	route("PATCH /twins/{id}/modules/{mid}", "Module", h.patchTwin)
	route("PUT /twins/{id}/modules/{mid}", "Module", h.putTwin)
	route("PUT /twins/{id}", "Device", h.putTwin)
	route("POST /devices", "Device", h.bulkDevices)
	route("GET /statistics/devices", "Device", h.deviceStatistics)
	route("GET /statistics/service", "Device", h.serviceStatistics)
	route("POST /devices/{id}/applyConfigurationContent", "Device", h.applyConfiguration)
	route("GET /configurations", "Configuration", h.listConfigurations)
	route("PUT /configurations/{cid}", "Configuration", h.putConfiguration)
	route("GET /configurations/{cid}", "Configuration", h.getConfiguration)
	route("DELETE /configurations/{cid}", "Configuration", h.deleteConfiguration)
	// On etcd a query reads its whole collection from the store
	// (querypaged.go): it gets pagedQueryTime on top of the write timeout.
	mux.Handle("POST /devices/query", h.wrap("Device", h.queryTwins, h.queryTime()))
	mux.Handle("GET "+syncPrefix+"/devices/{id}/sync", h.wrap("Device", admitSyncs(h.sync, h.syncSlots, hubapi.MaxWait+h.limits.WriteTimeout), hubapi.MaxWait)) // a long poll
	route("POST "+syncPrefix+"/devices/{id}/reported", "Device", h.uploadReported)
	route("POST "+syncPrefix+"/policies/{name}/rotate", "Policy", h.rotatePolicy)
	mux.Handle("POST /twins/{id}/methods", h.wrap("Device", h.invokeMethod, 2*hubapi.MaxMethodTimeout))               // waits for the device
	mux.Handle("POST /twins/{id}/modules/{mid}/methods", h.wrap("Module", h.invokeMethod, 2*hubapi.MaxMethodTimeout)) // waits for the module
	route("POST "+syncPrefix+"/devices/{id}/methods/{call}", "Device", h.methodResult)
	route("POST "+syncPrefix+"/devices/{id}/messages/upstream", "Device", h.uploadMessages)
	mux.Handle("GET /devices/{id}/messages", h.wrap("Device", h.listMessages, telemetryMaxWait)) // may wait
	mux.HandleFunc("/$iothub/websocket", h.refuseWebSocket)                                      // AMQP and MQTT over WebSocket: refused at once
	route("GET "+syncPrefix+"/status", "Hub", h.status)
	mux.HandleFunc("GET /healthz", h.healthz) // for load balancers: no credentials
	mux.HandleFunc("GET /readyz", h.readyz)
	// The operators' change stream, a long poll (changes.go).
	mux.Handle("GET "+hubapi.ChangesPath, h.wrap("Device", h.serveChanges, hubapi.MaxWait))
	route("GET "+hubapi.FleetPath, "Device", h.listFleet) // fleet.go
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		refuse(w, r, errorf(http.StatusNotFound, "NotFound", "no such API: %s %s", r.Method, r.URL.Path))
	})
	return h.guard(mux)
}

// wrap authenticates, reads the body (at most MaxBodySize, within the read
// timeout) and maps fn's error; kind names the entity of the route for error
// codes (DeviceNotFound, ModuleAlreadyExists…). A request refused before its
// body is read gets its answer on a connection that is then closed. fn has
// the write timeout, plus wait for a route that may wait before it answers
// (a long poll), to handle the request and write its answer.
func (h *Hub) wrap(kind string, fn handler, wait time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, aerr := h.authenticate(r)
		if aerr == nil {
			aerr = checkPathIDs(r)
		}
		if aerr != nil {
			refuse(w, r, aerr)
			return
		}
		// The one place where $agent, the agent module's old name, is read as $edgeAgent.
		if mid := r.PathValue("mid"); mid != "" {
			r.SetPathValue("mid", registry.CanonicalModuleID(mid))
		}
		if hasBody(r) {
			b, aerr := h.readBodyWithin(w, r)
			if aerr != nil {
				refuse(w, r, aerr)
				return
			}
			r.Body = &bodyBytes{bytes.NewReader(b), b}
		}
		if wait > 0 {
			http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + h.limits.WriteTimeout))
		}
		if err := fn(w, r, p); err != nil {
			ae := toAPIError(err, kind)
			if ae.status >= 500 {
				h.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			writeError(w, ae)
		}
	})
}

// checkPathIDs answers 400 for a device or module id in the path that is not
// valid, before it can reach the store.
func checkPathIDs(r *http.Request) *apiError {
	if id := r.PathValue("id"); id != "" {
		if err := identity.ValidateDeviceID(id); err != nil {
			return errorf(http.StatusBadRequest, "ArgumentInvalid", "%v", err)
		}
	}
	mid := r.PathValue("mid")
	if mid == "" {
		return nil
	}
	if err := identity.ValidateModuleIDAllowSystem(mid); err != nil {
		return errorf(http.StatusBadRequest, "ArgumentInvalid", "%v", err)
	}
	return nil
}

// userModule fails for the id of a system module ($edgeAgent, $edgeHub, …):
// the hub creates and deletes those itself, users may only read them.
func userModule(mid string) error {
	if err := identity.ValidateModuleID(mid); err != nil {
		return errorf(http.StatusBadRequest, "ArgumentInvalid", "%v; the hub creates and deletes system modules itself", err)
	}
	return nil
}

// readJSON reads the request body into v, with errors that say what was wrong.
func readJSON(r *http.Request, v any) error {
	b, err := readBody(r)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return errorf(http.StatusBadRequest, "ArgumentInvalid", "malformed JSON body: %v", err)
	}
	return nil
}

// readBody reads a JSON request body. Like IoT Hub's strict parsers, and
// unlike encoding/json, it refuses invalid UTF-8, unpaired surrogate escapes
// and duplicate keys, naming their JSON path.
func readBody(r *http.Request) ([]byte, error) {
	var b []byte
	if bb, ok := r.Body.(*bodyBytes); ok && bb.Len() == len(bb.b) {
		b = bb.b // read by wrap, and not yet by anyone else
	} else {
		var err error
		if b, err = io.ReadAll(r.Body); err != nil {
			return nil, err
		}
	}
	if err := twin.CheckJSON(b); err != nil { // which checks json.Valid first
		if !json.Valid(b) {
			var x any
			err := json.Unmarshal(b, &x)
			return nil, errorf(http.StatusBadRequest, "ArgumentInvalid", "malformed JSON body: %v", err)
		}
		return nil, errorf(http.StatusBadRequest, "ArgumentInvalid", "JSON body: %v", err)
	}
	return b, nil
}

// bodyBytes is a request body wrap has read whole: readBody takes its bytes
// instead of copying them again.
type bodyBytes struct {
	*bytes.Reader
	b []byte
}

func (*bodyBytes) Close() error { return nil }

func ifMatch(r *http.Request) string { return strings.Trim(r.Header.Get("If-Match"), `"`) }

func setETag(w http.ResponseWriter, etag string) { w.Header().Set("ETag", `"`+etag+`"`) }

// requireRight fails unless p is a policy with one of rights.
func requireRight(p principal, rights ...string) error {
	for _, r := range rights {
		if p.can(r) {
			return nil
		}
	}
	if p.policy == nil {
		return forbidden(p, "use this API")
	}
	return missingRight(p, strings.Join(rights, " or "))
}

// readAccess allows policies with one of rights, the device itself, and
// (for a module entity) the module itself.
func readAccess(p principal, deviceID, moduleID string, rights ...string) error {
	if p.policy == nil && p.deviceID == deviceID && (p.moduleID == "" || p.moduleID == moduleID) {
		return nil
	}
	if p.policy == nil {
		return forbidden(p, fmt.Sprintf("read %s", entityName(deviceID, moduleID)))
	}
	return requireRight(p, rights...)
}

func entityName(deviceID, moduleID string) string {
	if moduleID == "" {
		return "device " + deviceID
	}
	return "module " + deviceID + "/" + moduleID
}

// deviceBody is what a client may set on a device.
type deviceBody struct {
	DeviceID       string                   `json:"deviceId"`
	Status         string                   `json:"status"`
	StatusReason   string                   `json:"statusReason"`
	ETag           string                   `json:"etag"`
	Authentication *registry.Authentication `json:"authentication"`
	Capabilities   *registry.Capabilities   `json:"capabilities"`
	DeviceScope    *string                  `json:"deviceScope"`
	ParentScopes   []string                 `json:"parentScopes"`
}

// device is the identity the body asks for. A deviceScope given as "" (with no
// parentScopes) removes a leaf device's parent; one left out keeps it.
func (b deviceBody) device(id string) registry.Device {
	d := registry.Device{DeviceID: id, Status: b.Status, StatusReason: b.StatusReason, Authentication: b.Authentication,
		Capabilities: b.Capabilities, ParentScopes: b.ParentScopes}
	if b.DeviceScope != nil {
		d.DeviceScope = *b.DeviceScope
		if d.DeviceScope == "" && d.ParentScopes == nil {
			d.ParentScopes = []string{}
		}
	}
	return d
}

// moduleBody is what a client may set on a module.
type moduleBody struct {
	DeviceID       string                   `json:"deviceId"`
	ModuleID       string                   `json:"moduleId"`
	ManagedBy      string                   `json:"managedBy"`
	ETag           string                   `json:"etag"`
	Authentication *registry.Authentication `json:"authentication"`
}

func (h *Hub) listDevices(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireRight(p, RegistryRead); err != nil {
		return err
	}
	devices, err := h.devicePage(w, r)
	if err != nil {
		return err
	}
	if devices == nil {
		devices = []registry.Device{}
	}
	for i := range devices {
		h.presence.device(&devices[i])
	}
	writeJSON(w, http.StatusOK, devices)
	return nil
}

func (h *Hub) putDevice(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireRight(p, RegistryWrite); err != nil {
		return err
	}
	id := r.PathValue("id")
	var body deviceBody
	if err := readJSON(r, &body); err != nil {
		return err
	}
	if body.DeviceID != "" && body.DeviceID != id {
		return errorf(http.StatusBadRequest, "ArgumentInvalid", "deviceId %q in the body does not match %q in the path", body.DeviceID, id)
	}
	d := body.device(id)
	var err error
	if match := ifMatch(r); match != "" {
		d, err = h.reg.UpdateDevice(d, match)
	} else {
		if d.Capabilities == nil { // IoT Hub's default: a leaf device
			d.Capabilities = &registry.Capabilities{}
		}
		d, err = h.reg.CreateDevice(d)
	}
	if err != nil {
		return err
	}
	setETag(w, d.ETag)
	writeJSON(w, http.StatusOK, d)
	return nil
}

func (h *Hub) getDevice(w http.ResponseWriter, r *http.Request, p principal) error {
	id := r.PathValue("id")
	if err := readAccess(p, id, "", RegistryRead); err != nil {
		return err
	}
	d, err := h.reg.GetDevice(id)
	if err != nil {
		return err
	}
	h.presence.device(&d)
	setETag(w, d.ETag)
	writeJSON(w, http.StatusOK, d)
	return nil
}

func (h *Hub) deleteDevice(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireRight(p, RegistryWrite); err != nil {
		return err
	}
	if err := h.reg.DeleteDevice(r.PathValue("id"), ifMatch(r)); err != nil {
		return err
	}
	h.presence.forget(r.PathValue("id"))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Hub) listModules(w http.ResponseWriter, r *http.Request, p principal) error {
	id := r.PathValue("id")
	if err := readAccess(p, id, "", RegistryRead); err != nil {
		return err
	}
	mods, err := h.reg.ListModules(id)
	if err != nil {
		return err
	}
	for i := range mods {
		h.presence.module(&mods[i])
	}
	writeJSON(w, http.StatusOK, mods)
	return nil
}

func (h *Hub) putModule(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireRight(p, RegistryWrite); err != nil {
		return err
	}
	id, mid := r.PathValue("id"), r.PathValue("mid")
	if err := userModule(mid); err != nil {
		return err
	}
	var body moduleBody
	if err := readJSON(r, &body); err != nil {
		return err
	}
	if (body.DeviceID != "" && body.DeviceID != id) || (body.ModuleID != "" && body.ModuleID != mid) {
		return errorf(http.StatusBadRequest, "ArgumentInvalid", "deviceId/moduleId in the body (%q/%q) do not match the path (%q/%q)", body.DeviceID, body.ModuleID, id, mid)
	}
	m := registry.Module{DeviceID: id, ModuleID: mid, ManagedBy: body.ManagedBy, Authentication: body.Authentication}
	var err error
	if match := ifMatch(r); match != "" {
		m, err = h.reg.UpdateModule(m, match)
	} else {
		m, err = h.reg.CreateModule(m)
	}
	if err != nil {
		return err
	}
	setETag(w, m.ETag)
	writeJSON(w, http.StatusOK, m)
	return nil
}

func (h *Hub) getModule(w http.ResponseWriter, r *http.Request, p principal) error {
	id, mid := r.PathValue("id"), r.PathValue("mid")
	if err := readAccess(p, id, mid, RegistryRead); err != nil {
		return err
	}
	m, err := h.reg.GetModule(id, mid)
	if err != nil {
		return err
	}
	h.presence.module(&m)
	setETag(w, m.ETag)
	writeJSON(w, http.StatusOK, m)
	return nil
}

func (h *Hub) deleteModule(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireRight(p, RegistryWrite); err != nil {
		return err
	}
	if err := userModule(r.PathValue("mid")); err != nil {
		return err
	}
	if err := h.reg.DeleteModule(r.PathValue("id"), r.PathValue("mid"), ifMatch(r)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Hub) getTwin(w http.ResponseWriter, r *http.Request, p principal) error {
	id, mid := r.PathValue("id"), r.PathValue("mid")
	if err := readAccess(p, id, mid, RegistryRead, ServiceConnect); err != nil {
		return err
	}
	t, err := h.reg.GetTwin(id, mid)
	if err != nil {
		return err
	}
	return h.writeTwinWithConfigurations(w, t)
}

// patchTwin applies an IoT Hub twin PATCH. Operators (policies with
// serviceConnect) write tags and desired; a device or module writes only the
// reported properties of its own twins.
func (h *Hub) patchTwin(w http.ResponseWriter, r *http.Request, p principal) error {
	id, mid := r.PathValue("id"), r.PathValue("mid")
	device := p.policy == nil
	if device {
		if p.deviceID != id || (p.moduleID != "" && p.moduleID != mid) {
			return forbidden(p, "write the twin of "+entityName(id, mid))
		}
	} else if err := requireRight(p, ServiceConnect); err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if device {
		if err := onlyReported(body); err != nil {
			return err
		}
	}
	now := h.now().UTC()
	t, err := h.reg.UpdateTwin(id, mid, ifMatch(r), func(t *twin.Twin) (bool, error) {
		return t.Apply(body, now, device)
	})
	if err != nil {
		return err
	}
	return h.writeTwin(w, t)
}

// onlyReported fails unless a twin patch touches nothing but reported.
func onlyReported(body []byte) error {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil {
		return errorf(http.StatusBadRequest, "ArgumentInvalid", "twin patch: %v", err)
	}
	if _, ok := doc["tags"]; ok {
		return errorf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "a device may not write tags")
	}
	var props map[string]json.RawMessage
	if raw, ok := doc["properties"]; ok {
		if err := json.Unmarshal(raw, &props); err != nil {
			return errorf(http.StatusBadRequest, "ArgumentInvalid", "twin patch: properties: %v", err)
		}
	}
	if _, ok := props["desired"]; ok {
		return errorf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "a device may not write desired properties")
	}
	return nil
}

func (h *Hub) putTwin(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireRight(p, ServiceConnect); err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	now := h.now().UTC()
	t, err := h.reg.UpdateTwin(r.PathValue("id"), r.PathValue("mid"), ifMatch(r), func(t *twin.Twin) (bool, error) {
		return t.Replace(body, now)
	})
	if err != nil {
		return err
	}
	return h.writeTwin(w, t)
}

// applyConfiguration serves POST /devices/{id}/applyConfigurationContent:
// the body is an IoT Edge deployment ({"modulesContent": …}) or a native
// manifest in JSON. It answers the warnings for parts not supported yet.
func (h *Hub) applyConfiguration(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireRight(p, RegistryWrite); err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	m, warnings, err := deployment.Parse(body, "deployment")
	if err != nil {
		return errorf(http.StatusBadRequest, "ArgumentInvalid", "%v", err)
	}
	if err := h.reg.ApplyDeployment(r.PathValue("id"), m); err != nil {
		return err
	}
	if warnings == nil {
		warnings = []string{}
	}
	writeJSON(w, http.StatusOK, map[string][]string{"warnings": warnings})
	return nil
}
