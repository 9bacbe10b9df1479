package hubapi

// SyncChild is a child of the syncing edge device (a device whose parent it
// is, a leaf device or an edge device below it), with its keys: the edge
// device's broker verifies the child's SAS tokens with them, offline too.
type SyncChild struct {
	DeviceID     string `json:"deviceId"`
	GenerationID string `json:"generationId"`
	Status       string `json:"status"` // "enabled" or "disabled"
	ETag         string `json:"etag"`
	PrimaryKey   string `json:"primaryKey"`
	SecondaryKey string `json:"secondaryKey"`
}

// Enabled reports whether the child may connect.
func (c SyncChild) Enabled() bool { return c.Status != "disabled" }
