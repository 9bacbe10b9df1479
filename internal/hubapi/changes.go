package hubapi

// ChangesPath is the operators' registry-wide change stream, a long poll:
// GET ChangesPath?cursor=C&wait=30s (a policy with registryRead).
const ChangesPath = Prefix + "/changes"

// Changes is the answer of ChangesPath: the devices whose identity,
// modules or twins changed since the cursor asked about, each once.
// Reset says the hub cannot tell (no cursor, a cursor from before the hub
// restarted, or one too far behind): read everything again, then follow
// from Cursor.
type Changes struct {
	Cursor  string   `json:"cursor"`
	Reset   bool     `json:"reset,omitempty"`
	Devices []string `json:"devices"`
}
