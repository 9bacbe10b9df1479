package hub

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/outpost-edge/outpost/internal/registry"
	"github.com/outpost-edge/outpost/internal/twin"
)

// twinDocument is a twin as IoT Hub's twin API answers it: the twin's own
// members and what the device or module identity says of itself.
type twinDocument struct {
	DeviceID                  string                 `json:"deviceId"`
	ModuleID                  string                 `json:"moduleId,omitempty"`
	ETag                      string                 `json:"etag"`
	DeviceETag                string                 `json:"deviceEtag"`
	Status                    string                 `json:"status"`
	StatusReason              string                 `json:"statusReason,omitempty"`
	StatusUpdateTime          time.Time              `json:"statusUpdateTime"`
	ConnectionState           string                 `json:"connectionState"`
	LastActivityTime          time.Time              `json:"lastActivityTime"`
	CloudToDeviceMessageCount int                    `json:"cloudToDeviceMessageCount"`
	AuthenticationType        string                 `json:"authenticationType"`
	X509Thumbprint            x509Thumbprint         `json:"x509Thumbprint"`
	ModelID                   string                 `json:"modelId"`
	Version                   int64                  `json:"version"`
	Tags                      json.RawMessage        `json:"tags"`
	Properties                json.RawMessage        `json:"properties"`
	Capabilities              *registry.Capabilities `json:"capabilities,omitempty"`
	DeviceScope               string                 `json:"deviceScope,omitempty"`
	ParentScopes              []string               `json:"parentScopes,omitempty"`
}

// x509Thumbprint is IoT Hub's; outpost identities authenticate with keys,
// so both are null.
type x509Thumbprint struct {
	Primary   *string `json:"primaryThumbprint"`
	Secondary *string `json:"secondaryThumbprint"`
}

// twinJSON returns t as IoT Hub's GET twin answers it, with the identity
// fields of its device (or module) as they are now.
func (h *Hub) twinJSON(t *twin.Twin) ([]byte, error) {
	doc := twinDocument{
		DeviceID:   t.DeviceID,
		ModuleID:   t.ModuleID,
		ETag:       t.ETag,
		Status:     t.Status,
		Version:    t.Version,
		Tags:       t.SectionJSON(twin.Tags),
		Properties: t.PropertiesJSON(),
	}
	var auth *registry.Authentication
	if t.ModuleID == "" {
		d, err := h.reg.GetDevice(t.DeviceID)
		if err != nil {
			return nil, err
		}
		h.presence.device(&d)
		doc.DeviceETag, doc.Status, doc.StatusReason, doc.StatusUpdateTime = d.ETag, d.Status, d.StatusReason, d.StatusUpdatedTime
		doc.ConnectionState, doc.LastActivityTime = d.ConnectionState, d.LastActivityTime
		doc.CloudToDeviceMessageCount, auth = d.CloudToDeviceMessageCount, d.Authentication
		doc.Capabilities = d.Capabilities
		doc.DeviceScope, doc.ParentScopes = d.DeviceScope, d.ParentScopes
		if doc.Capabilities == nil {
			doc.Capabilities = &registry.Capabilities{IoTEdge: registry.IsEdge(d)}
		}
	} else {
		m, err := h.reg.GetModule(t.DeviceID, t.ModuleID)
		if err != nil {
			return nil, err
		}
		h.presence.module(&m)
		doc.DeviceETag = m.ETag
		doc.ConnectionState, doc.LastActivityTime = m.ConnectionState, m.LastActivityTime
		doc.CloudToDeviceMessageCount, auth = m.CloudToDeviceMessageCount, m.Authentication
	}
	doc.AuthenticationType = "sas"
	if auth != nil && auth.Type != "" {
		doc.AuthenticationType = auth.Type
	}
	return json.Marshal(doc)
}

// writeTwin answers t as IoT Hub's twin API does, its etag in the ETag header.
func (h *Hub) writeTwin(w http.ResponseWriter, t *twin.Twin) error {
	b, err := h.twinJSON(t)
	if err != nil {
		return err
	}
	setETag(w, t.ETag)
	writeJSON(w, http.StatusOK, b)
	return nil
}
