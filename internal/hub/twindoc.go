package hub

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
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
	return h.appendTwinJSON(nil, t)
}

// appendTwinJSON appends twinJSON's answer to b. It writes the document by
// hand, byte for byte what json.Marshal of its twinDocument writes
// (TestTwinDocumentJSON), without encoding/json's reflection and its second
// scan of the twin's sections (a tenth of a PATCH's CPU went to building
// the answer).
func (h *Hub) appendTwinJSON(b []byte, t *twin.Twin) ([]byte, error) {
	doc, err := h.twinDocument(t)
	if err != nil {
		return b, err
	}
	return doc.appendJSON(b)
}

func (h *Hub) twinDocument(t *twin.Twin) (twinDocument, error) {
	doc := twinDocument{
		DeviceID: t.DeviceID,
		ModuleID: t.ModuleID,
		ETag:     t.ETag,
		Status:   t.Status,
		Version:  t.Version,
	}
	var auth *registry.Authentication
	if t.ModuleID == "" {
		d, err := h.reg.GetDevice(t.DeviceID)
		if err != nil {
			return doc, err
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
			return doc, err
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
	doc.Tags = t.SectionJSON(twin.Tags)
	doc.Properties = t.PropertiesJSON()
	return doc, nil
}

// appendJSON appends what json.Marshal(d) writes. Where its fast paths do
// not apply (a time json refuses, a section not in compact form) it asks
// encoding/json for that part, so the output is the same in every case.
func (d *twinDocument) appendJSON(b []byte) ([]byte, error) {
	var err error
	b = append(b, `{"deviceId":`...)
	b = appendJSONString(b, d.DeviceID)
	if d.ModuleID != "" {
		b = append(b, `,"moduleId":`...)
		b = appendJSONString(b, d.ModuleID)
	}
	b = append(b, `,"etag":`...)
	b = appendJSONString(b, d.ETag)
	b = append(b, `,"deviceEtag":`...)
	b = appendJSONString(b, d.DeviceETag)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, d.Status)
	if d.StatusReason != "" {
		b = append(b, `,"statusReason":`...)
		b = appendJSONString(b, d.StatusReason)
	}
	b = append(b, `,"statusUpdateTime":`...)
	if b, err = appendJSONTime(b, d.StatusUpdateTime); err != nil {
		return nil, err
	}
	b = append(b, `,"connectionState":`...)
	b = appendJSONString(b, d.ConnectionState)
	b = append(b, `,"lastActivityTime":`...)
	if b, err = appendJSONTime(b, d.LastActivityTime); err != nil {
		return nil, err
	}
	b = append(b, `,"cloudToDeviceMessageCount":`...)
	b = strconv.AppendInt(b, int64(d.CloudToDeviceMessageCount), 10)
	b = append(b, `,"authenticationType":`...)
	b = appendJSONString(b, d.AuthenticationType)
	b = append(b, `,"x509Thumbprint":{"primaryThumbprint":`...)
	b = appendJSONStringPtr(b, d.X509Thumbprint.Primary)
	b = append(b, `,"secondaryThumbprint":`...)
	b = appendJSONStringPtr(b, d.X509Thumbprint.Secondary)
	b = append(b, `},"modelId":`...)
	b = appendJSONString(b, d.ModelID)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, d.Version, 10)
	b = append(b, `,"tags":`...)
	if b, err = appendRawJSON(b, d.Tags); err != nil {
		return nil, err
	}
	b = append(b, `,"properties":`...)
	if b, err = appendRawJSON(b, d.Properties); err != nil {
		return nil, err
	}
	if d.Capabilities != nil {
		b = append(b, `,"capabilities":{"iotEdge":`...)
		b = strconv.AppendBool(b, d.Capabilities.IoTEdge)
		b = append(b, '}')
	}
	if d.DeviceScope != "" {
		b = append(b, `,"deviceScope":`...)
		b = appendJSONString(b, d.DeviceScope)
	}
	if len(d.ParentScopes) > 0 {
		b = append(b, `,"parentScopes":[`...)
		for i, s := range d.ParentScopes {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, s)
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

// appendJSONString appends s as json.Marshal quotes it: printable ASCII
// other than '"', '\\', '<', '>' and '&' as is, anything else through
// encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func appendJSONStringPtr(b []byte, s *string) []byte {
	if s == nil {
		return append(b, "null"...)
	}
	return appendJSONString(b, *s)
}

// appendJSONTime appends t as time.Time's MarshalJSON does (RFC 3339 with
// nanoseconds), which fails for years outside 0–9999.
func appendJSONTime(b []byte, t time.Time) ([]byte, error) {
	if _, off := t.Zone(); t.Year() < 0 || t.Year() > 9999 || off <= -24*3600 || off >= 24*3600 {
		q, err := t.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("twin answer: %w", err)
		}
		return append(b, q...), nil
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

// appendRawJSON appends raw, JSON the twin package wrote, as json.Marshal
// writes a json.RawMessage: compacted, with '<', '>', '&', U+2028 and
// U+2029 escaped, and null when empty. The twin package writes compact
// JSON; raw with any space outside its strings goes through json.Compact.
func appendRawJSON(b []byte, raw []byte) ([]byte, error) {
	if len(raw) == 0 {
		return append(b, "null"...), nil
	}
	inString, escaped := false, false
	for _, c := range raw {
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			var buf bytes.Buffer
			if err := json.Compact(&buf, raw); err != nil {
				return nil, fmt.Errorf("twin answer: %w", err)
			}
			return appendRawJSON(b, buf.Bytes())
		}
	}
	start := 0
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '<' || c == '>' || c == '&' {
			b = append(b, raw[start:i]...)
			b = append(b, `\u00`...)
			b = append(b, hexDigit[c>>4], hexDigit[c&0xF])
			start = i + 1
		}
		// U+2028 and U+2029 are E2 80 A8 and E2 80 A9 in UTF-8.
		if c == 0xE2 && i+2 < len(raw) && raw[i+1] == 0x80 && raw[i+2]&^1 == 0xA8 {
			b = append(b, raw[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, hexDigit[raw[i+2]&0xF])
			i += 2
			start = i + 1
		}
	}
	return append(b, raw[start:]...), nil
}

const hexDigit = "0123456789abcdef"

// writeTwin answers t as IoT Hub's twin API does, its etag in the ETag header.
func (h *Hub) writeTwin(w http.ResponseWriter, t *twin.Twin) error {
	buf := answerBuffers.Get().(*[]byte)
	b, err := h.appendTwinJSON((*buf)[:0], t)
	if err == nil {
		setETag(w, t.ETag)
		writeJSON(w, http.StatusOK, b)
	}
	if cap(b) <= maxPooledAnswer {
		*buf = b[:0]
		answerBuffers.Put(buf)
	}
	return err
}

// answerBuffers hold the answers being written: the ResponseWriter copies
// what it is given, so a buffer is free again once written. Buffers past
// maxPooledAnswer (a twin near its size limits) are left to the GC.
var answerBuffers = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledAnswer = 64 << 10
