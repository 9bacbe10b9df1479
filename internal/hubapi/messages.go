package hubapi

import "time"

// Message is one device-to-cloud message: as the daemon keeps it in its
// queue, uploads it (POST /devices/{id}/messages/upstream) and as the hub
// serves it back (GET /devices/{id}/messages).
type Message struct {
	// Seq is the device's queue sequence number when uploaded (the hub
	// drops what it already has), the hub's own when read back.
	Seq uint64 `json:"seq,omitempty"`
	// DeviceID is the device that sent the message (IoT Hub's
	// connectionDeviceId): the uploading edge device itself, or one of its
	// leaf devices (a child, whose messages the edge device forwards; the hub
	// files them under the child's id).
	DeviceID string `json:"deviceId"`
	ModuleID string `json:"moduleId,omitempty"`
	// OutputName is the output the module sent on ($.on), "" for none.
	OutputName string `json:"outputName,omitempty"`
	// EnqueuedTime is when the device made the message durable;
	// ReceivedTime when the hub did.
	EnqueuedTime time.Time `json:"enqueuedTimeUtc"`
	ReceivedTime time.Time `json:"receivedTimeUtc,omitzero"`
	// SystemProperties by their MQTT names: $.mid, $.cid, $.uid, $.ct, $.ce, …
	SystemProperties map[string]string `json:"systemProperties,omitempty"`
	// Properties are the application properties.
	Properties map[string]string `json:"properties,omitempty"`
	Body       []byte            `json:"body"`
}

// MessageUpload is the body of POST /devices/{id}/messages/upstream: a
// batch of a device's messages in queue order. Epoch names the device's
// queue (it starts afresh on a new data dir), so that the hub can tell a
// resent message from a new one.
type MessageUpload struct {
	Epoch    string    `json:"epoch"`
	Messages []Message `json:"messages"`
}

// MessageUploadResult answers an upload: the last seq the hub has durably,
// which the device acknowledges in its queue, and the messages of the batch
// it rejected (acknowledged too, as rejected reported patches are: sending
// them again would not help, and they must not block the queue).
type MessageUploadResult struct {
	Acked    uint64            `json:"acked"`
	Rejected []RejectedMessage `json:"rejected,omitempty"`
}

// RejectedMessage is a message of an upload the hub did not keep: one of a
// device that is neither the uploading edge device nor one of its children.
type RejectedMessage struct {
	Seq      uint64 `json:"seq"`
	DeviceID string `json:"deviceId"`
	Error    string `json:"error"`
}

// MessageList answers GET /devices/{id}/messages: messages oldest first,
// and Next, the seq to ask after for what comes later.
type MessageList struct {
	Messages []Message `json:"messages"`
	Next     uint64    `json:"next"`
}

// MessageUploadPath is where a device uploads its messages.
func MessageUploadPath(deviceID string) string {
	return Prefix + "/devices/" + escape(deviceID) + "/messages/upstream"
}

// MessagesPath is where a device's messages are read (service API, not
// under Prefix: the TUI and the CLI read it with a service token).
func MessagesPath(deviceID string) string { return "/devices/" + escape(deviceID) + "/messages" }

// MaxMessageUpload is the largest upload body the hub takes.
const MaxMessageUpload = 2 << 20
