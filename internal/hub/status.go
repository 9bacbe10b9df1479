package hub

import (
	"context"
	"net/http"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/store/etcdstore"
)

// probeTimeout bounds what the status waits for etcd's members.
const probeTimeout = 2 * time.Second

// ready reports why the hub cannot serve requests now: nil when its store
// answers (ready.go: from the background probes).
func (h *Hub) ready(ctx context.Context) error {
	return h.startProbes().state(ctx)
}

// healthz serves GET /healthz, for a load balancer's liveness probe: the hub
// process serves HTTP. It needs no credentials.
func (h *Hub) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

// readyz serves GET /readyz, for a load balancer's readiness probe: 200 when
// the hub's store answers (etcd has a quorum; the file store takes writes),
// else 503 saying why. It answers from the probes that run in the
// background (ready.go), at once, however busy the hub. It needs no
// credentials and tells nothing of the registry.
func (h *Hub) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := h.ready(r.Context()); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("not ready: " + err.Error() + "\n"))
		return
	}
	w.Write([]byte("ready\n"))
}

// status serves GET /outpost/v1/status (hubapi.HubStatus), for registryRead.
func (h *Hub) status(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireRight(p, RegistryRead); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, h.Status(r.Context()))
	return nil
}

// Status is what the hub says of itself and of its store.
func (h *Hub) Status(ctx context.Context) hubapi.HubStatus {
	s := hubapi.HubStatus{Store: h.StoreBackend(), DataDir: h.cfg.DataDir, ConnectedDevices: h.presence.connectedCount(), LongPolls: h.longPolls.Load()}
	if err := h.ready(ctx); err != nil {
		s.StoreError = err.Error()
	} else {
		s.Ready = true
	}
	if es, ok := h.st.(*etcdstore.Store); ok {
		s.Endpoints, s.Prefix = es.Endpoints(), es.Prefix()
		for _, m := range es.Status(ctx, probeTimeout) {
			s.Members = append(s.Members, hubapi.EtcdMemberStatus(m))
		}
		if s.Ready {
			s.Revision, _ = es.Revision()
		}
	}
	return s
}
