package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/query"
	"github.com/outpost-edge/outpost/internal/registry"
	"github.com/outpost-edge/outpost/internal/twin"
)

// IoT Hub configurations: automatic deployments (content.modulesContent)
// and automatic device configurations (content.deviceContent) that the hub
// applies to every device their target condition matches, and automatic
// module configurations (content.moduleContent) that it applies to every
// module twin theirs matches. The logic is the registry's; see
// registry/automatic.go and registry/automatic_modules.go.

// startAutoDeploy runs the hub's automatic deployments until the returned
// function is called; that function returns once they stopped.
func (h *Hub) startAutoDeploy(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := h.autodeploy.Run(ctx); err != nil {
			h.log.Error("automatic deployments stopped", "err", err)
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

func (h *Hub) putConfiguration(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireRight(p, RegistryWrite); err != nil {
		return err
	}
	id := r.PathValue("cid")
	var c registry.Configuration
	if err := readJSON(r, &c); err != nil {
		return err
	}
	if c.ID != "" && c.ID != id {
		return errorf(http.StatusBadRequest, "ArgumentInvalid", "id %q in the body does not match %q in the path", c.ID, id)
	}
	c.ID = id
	var err error
	if match := ifMatch(r); match != "" {
		c, err = h.reg.UpdateConfiguration(c, match)
	} else {
		c, err = h.reg.CreateConfiguration(c)
	}
	if err != nil {
		return err
	}
	return h.writeConfiguration(w, c)
}

func (h *Hub) getConfiguration(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireRight(p, RegistryRead); err != nil {
		return err
	}
	c, err := h.reg.GetConfiguration(r.PathValue("cid"))
	if err != nil {
		return err
	}
	return h.writeConfiguration(w, c)
}

// countQuery counts the rows of a custom metric's query, as IoT Hub's
// metrics do.
func (h *Hub) countQuery(q string) (int64, error) {
	pq, err := query.Parse(q)
	if err != nil {
		return 0, err
	}
	rows, _, err := h.runQuery(pq, queryPos{}, 0)
	if err != nil {
		return 0, err
	}
	return int64(len(rows)), nil
}

// writeConfiguration answers c with its metrics.
func (h *Hub) writeConfiguration(w http.ResponseWriter, c registry.Configuration) error {
	if err := h.configurationMetrics(&c); err != nil {
		return err
	}
	setETag(w, c.ETag)
	writeJSON(w, http.StatusOK, c)
	return nil
}

// configurationMetrics fills in c's metrics; a custom query that fails
// counts -1 and is logged, so that one bad query does not hide the rest.
func (h *Hub) configurationMetrics(c *registry.Configuration) error {
	err := h.reg.ConfigurationMetrics(c, h.countQuery)
	if err != nil && c.SystemMetrics != nil {
		h.log.Warn("configuration metrics", "id", c.ID, "err", err)
		return nil
	}
	return err
}

func (h *Hub) listConfigurations(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireRight(p, RegistryRead); err != nil {
		return err
	}
	list, err := h.reg.ListConfigurations()
	if err != nil {
		return err
	}
	for i := range list {
		if err := h.configurationMetrics(&list[i]); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (h *Hub) deleteConfiguration(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireRight(p, RegistryWrite); err != nil {
		return err
	}
	if err := h.reg.DeleteConfiguration(r.PathValue("cid"), ifMatch(r)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// writeTwinWithConfigurations answers a twin; the $edgeAgent twin carries
// the automatic deployments that target its device, the device twin the
// automatic device configurations and another module twin the automatic
// module configurations that target it, as IoT Hub shows them:
// "configurations": {"id": {"status": "Applied" | "Targeted"}}.
func (h *Hub) writeTwinWithConfigurations(w http.ResponseWriter, t *twin.Twin) error {
	var cfgs map[string]hubapi.ConfigurationStatus
	var err error
	switch t.ModuleID {
	case registry.AgentModule:
		cfgs, err = h.reg.DeviceConfigurations(t.DeviceID)
	case "":
		cfgs, err = h.reg.DeviceTwinConfigurations(t.DeviceID)
	default:
		cfgs, err = h.reg.ModuleTwinConfigurations(t.DeviceID, t.ModuleID)
	}
	if err != nil || cfgs == nil {
		if err == nil {
			err = h.writeTwin(w, t)
		}
		return err
	}
	b, err := h.twinJSON(t)
	if err != nil {
		return err
	}
	extra, err := json.Marshal(cfgs)
	if err != nil {
		return err
	}
	b = bytes.TrimSuffix(b, []byte("}"))
	b = append(append(append(b, `,"configurations":`...), extra...), '}')
	setETag(w, t.ETag)
	writeJSON(w, http.StatusOK, b)
	return nil
}
