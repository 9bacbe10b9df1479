package hubapi

// HubStatus is GET /outpost/v1/status: what one hub replica says of itself and
// of its store (`outpost hub status`).
type HubStatus struct {
	Store            string             `json:"store"` // "file" or "etcd"
	DataDir          string             `json:"dataDir,omitempty"`
	Endpoints        []string           `json:"etcdEndpoints,omitempty"`
	Prefix           string             `json:"etcdPrefix,omitempty"`
	Members          []EtcdMemberStatus `json:"etcdMembers,omitempty"`
	Revision         int64              `json:"revision,omitempty"` // etcd's, read through a quorum
	StoreError       string             `json:"storeError,omitempty"`
	Ready            bool               `json:"ready"`
	ConnectedDevices int                `json:"connectedDevices"` // through this replica
	LongPolls        int64              `json:"longPolls"`        // sync long polls this replica holds now
}

// EtcdMemberStatus is one etcd endpoint's status.
type EtcdMemberStatus struct {
	Endpoint string `json:"endpoint"`
	Healthy  bool   `json:"healthy"`
	Leader   bool   `json:"leader,omitempty"`
	Revision int64  `json:"revision,omitempty"`
	DBSize   int64  `json:"dbSize,omitempty"`
	Version  string `json:"version,omitempty"`
	Error    string `json:"error,omitempty"`
}
