package hub

import "net/http"

// deviceStatistics serves GET /statistics/devices: IoT Hub's
// {totalDeviceCount, enabledDeviceCount, disabledDeviceCount}.
func (h *Hub) deviceStatistics(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireRight(p, RegistryRead); err != nil {
		return err
	}
	s, err := h.reg.DeviceStatistics()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s)
	return nil
}

// serviceStatistics is IoT Hub's GET /statistics/service answer.
type serviceStatistics struct {
	ConnectedDeviceCount int `json:"connectedDeviceCount"`
}

// serviceStatistics serves GET /statistics/service: the devices connected
// now, as the hub's presence tracking sees them (a device is connected while
// it syncs, and for the presence grace after).
func (h *Hub) serviceStatistics(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireRight(p, ServiceConnect, RegistryRead); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, serviceStatistics{ConnectedDeviceCount: h.presence.connectedCount()})
	return nil
}
