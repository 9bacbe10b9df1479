// Package hubapi holds the wire types of the hub's device sync endpoints,
// shared by the hub (which serves them) and its client (which the daemon
// uses), so that neither imports the other.
package hubapi

import (
	"encoding/json"
	"time"
)

// Authentication is IoT Hub's authentication mechanism object.
type Authentication struct {
	Type         string        `json:"type"`
	SymmetricKey *SymmetricKey `json:"symmetricKey,omitempty"`
}

// SymmetricKey holds the two keys of an identity (two, so they can be rotated).
type SymmetricKey struct {
	PrimaryKey   string `json:"primaryKey"`
	SecondaryKey string `json:"secondaryKey"`
}

// Device is a device identity, in IoT Hub's JSON shape.
type Device struct {
	DeviceID                   string          `json:"deviceId"`
	GenerationID               string          `json:"generationId"`
	ETag                       string          `json:"etag"`
	ConnectionState            string          `json:"connectionState"`
	Status                     string          `json:"status"`
	StatusReason               string          `json:"statusReason,omitempty"`
	ConnectionStateUpdatedTime time.Time       `json:"connectionStateUpdatedTime"`
	StatusUpdatedTime          time.Time       `json:"statusUpdatedTime"`
	LastActivityTime           time.Time       `json:"lastActivityTime"`
	CloudToDeviceMessageCount  int             `json:"cloudToDeviceMessageCount"`
	Authentication             *Authentication `json:"authentication"`
	Capabilities               *Capabilities   `json:"capabilities,omitempty"`
	// DeviceScope is IoT Hub's: an edge device's own scope
	// (EdgeScope(id, generationId), set by the hub, immutable); a leaf
	// device's parent's scope, or empty for a leaf without a parent.
	DeviceScope string `json:"deviceScope,omitempty"`
	// ParentScopes holds the scope of the device's parent, an edge device:
	// at most one.
	ParentScopes []string `json:"parentScopes,omitempty"`
}

// Capabilities says what a device is: an IoT Edge device (which runs the
// daemon, has system modules and takes deployments) or a leaf device.
type Capabilities struct {
	IoTEdge bool `json:"iotEdge"`
}

// Module is a module identity, in IoT Hub's JSON shape.
type Module struct {
	ModuleID                   string          `json:"moduleId"`
	DeviceID                   string          `json:"deviceId"`
	ManagedBy                  string          `json:"managedBy,omitempty"`
	GenerationID               string          `json:"generationId"`
	ETag                       string          `json:"etag"`
	ConnectionState            string          `json:"connectionState"`
	ConnectionStateUpdatedTime time.Time       `json:"connectionStateUpdatedTime"`
	LastActivityTime           time.Time       `json:"lastActivityTime"`
	CloudToDeviceMessageCount  int             `json:"cloudToDeviceMessageCount"`
	Authentication             *Authentication `json:"authentication"`
}

// Prefix is the path prefix of outpost's own endpoints; the rest of the
// hub's API follows IoT Hub's service REST paths.
const Prefix = "/outpost/v1"

// SyncPath is the path of a device's sync endpoint:
//
//	GET {SyncPath}?cursor=C&wait=30s
//
// returns the device's state as a Sync. With a cursor from an earlier answer
// it returns only the twins written since; with wait it answers as soon as
// anything of the device changes, or after wait with the same cursor.
func SyncPath(deviceID string) string { return Prefix + "/devices/" + escape(deviceID) + "/sync" }

// ReportedPath is the path a device posts batches of reported patches to.
func ReportedPath(deviceID string) string {
	return Prefix + "/devices/" + escape(deviceID) + "/reported"
}

// MaxWait is the longest a sync request may wait for a change.
const MaxWait = 60 * time.Second

// Sync is what a device learns from the hub: its identity, its modules'
// identities with their keys (the daemon signs tokens for its modules), and
// module twins. The deployment is the desired properties of the `$edgeAgent`
// module twin.
type Sync struct {
	Cursor  string            `json:"cursor"`
	Full    bool              `json:"full"` // Twins holds every module's twin, not only changed ones
	Device  SyncDevice        `json:"device"`
	Modules []SyncModule      `json:"modules"`
	Twins   []json.RawMessage `json:"twins"` // module twins in IoT Hub's JSON shape
	// Reported says which of the device's reported patches the twins hold:
	// every seq ≤ Seq of outbox session Session (absent before any upload).
	// The device lays only later ones on them again.
	Reported *SyncReported `json:"reported,omitempty"`
	// Methods are direct method calls for the device to make now (only in
	// the answer to the device itself); it posts each one's result to
	// MethodResultPath.
	Methods []MethodCall `json:"methods,omitempty"`

	// Children is the whole list of the device's children with their keys
	// when it is not null: on a full sync, and whenever any child identity
	// changed since the cursor (one added, removed, disabled, re-keyed or
	// re-parented); [] when the device now has none. null means unchanged
	// since the cursor: keep the children you have. (In Go: nil against a
	// non-nil empty slice.)
	Children []SyncChild `json:"children"`
	// ChildTwins are the children's device twins, in IoT Hub's JSON shape
	// (as GET /twins/{id} answers): every child's when Children is sent,
	// else those written since the cursor, less those only the device's
	// own uploads wrote since the hub last sent them (it has them).
	ChildTwins []json.RawMessage `json:"childTwins,omitempty"`
}

// SyncReported is the hub's last applied reported patch of a device.
type SyncReported struct {
	Session string `json:"session"`
	Seq     int64  `json:"seq"`
}

// SyncDevice is the device's own identity, as the device sees it.
type SyncDevice struct {
	DeviceID     string `json:"deviceId"`
	GenerationID string `json:"generationId"`
	Status       string `json:"status"`
	ETag         string `json:"etag"`
}

// SyncModule is a module identity with its keys.
type SyncModule struct {
	ModuleID     string `json:"moduleId"`
	GenerationID string `json:"generationId"`
	ManagedBy    string `json:"managedBy,omitempty"`
	ETag         string `json:"etag"`
	PrimaryKey   string `json:"primaryKey"`
	SecondaryKey string `json:"secondaryKey"`
}

// ReportedBatch is a batch of reported patches, in the order the modules
// made them. Seq numbers rise through one outbox's whole history, and the
// hub applies each patch once, so a batch can be sent again after a failure.
//
// Session names the outbox the seqs belong to: the daemon makes a new one
// with its data dir, so a device that starts its numbering again (a wiped
// data dir) is never taken for one that is retrying. The hub also forgets
// what it applied when the device identity is created again.
type ReportedBatch struct {
	Session string          `json:"session,omitempty"`
	Patches []ReportedPatch `json:"patches"`
}

// MaxSeq is the largest seq a reported patch may carry (2^53−1, the largest
// whole number every JSON parser reads exactly). A device that would pass it
// starts a new session.
const MaxSeq = 1<<53 - 1

// ValidSession reports whether s is a session id the hub accepts: 1–64
// characters of A-Za-z0-9 and '-' (or "", the session of a daemon from
// before sessions).
func ValidSession(s string) bool {
	if len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// ReportedPatch is one reported-properties merge patch: of a module of the
// device (ModuleID), or of one of its children's device twins (DeviceID,
// with ModuleID empty). The hub applies a child's patch only while the
// child's parent is the device that posts it.
type ReportedPatch struct {
	Seq      int64           `json:"seq"`
	ModuleID string          `json:"moduleId"`
	DeviceID string          `json:"deviceId,omitempty"`
	Patch    json.RawMessage `json:"patch"`
}

// ReportedAck says which patches the hub holds: every seq ≤ Acked. Rejected
// patches (an unknown module, a patch over the twin limits) are acked too, so
// that one bad patch never blocks the queue, and listed with the reason.
type ReportedAck struct {
	Acked    int64      `json:"acked"`
	Rejected []Rejected `json:"rejected,omitempty"`
}

// Rejected is a patch the hub refused, and why.
type Rejected struct {
	Seq   int64  `json:"seq"`
	Error string `json:"error"`
}

func escape(s string) string {
	const hex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	return string(b)
}

// PolicyRotatePath is the path that rotates the keys of a shared access
// policy of the hub: POST a PolicyRotation, get the Policy back.
func PolicyRotatePath(name string) string { return Prefix + "/policies/" + escape(name) + "/rotate" }

// PolicyRotation asks for new keys for a shared access policy. By default
// both keys are replaced, so every token signed with an old key is refused
// at once. With KeepPrevious the old primary key becomes the secondary key
// and stays valid until the next rotation (a rollover), and only the primary
// key is new.
type PolicyRotation struct {
	KeepPrevious bool `json:"keepPrevious"`
}

// Policy is a shared access policy with its keys, as a rotation answers it.
// ConnectionString holds the new primary key.
type Policy struct {
	KeyName          string   `json:"keyName"`
	PrimaryKey       string   `json:"primaryKey"`
	SecondaryKey     string   `json:"secondaryKey"`
	Rights           []string `json:"rights"`
	ConnectionString string   `json:"connectionString"`
}
