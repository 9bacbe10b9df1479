package hub

import (
	"net/http"
	"time"
)

// syncSlots is how many syncs that answer at once (a device's first sync
// after it connects, or one without a wait) the hub serves at a time.
// When 10,000 devices connect at once, each first sync is a few store
// reads; on etcd all of them at once queued in the client and etcd until
// they ran out of their 5 s (503, the device retries: a storm amplified).
// A sync waiting its turn costs nothing; the newest go first (slotPool).
const syncSlots = 64

// admitSyncs bounds the syncs fn serves that answer at once; long polls
// (a cursor and a wait) are not bounded, as they park. It runs once the
// request is authenticated (Hub.wrap), so that requests with no valid
// token for the device never take a turn from those that have one. A sync
// whose turn came gets its write deadline (deadline > 0) from then, as it
// had before it waited.
func admitSyncs(fn handler, pool *slotPool, deadline time.Duration) handler {
	return func(w http.ResponseWriter, r *http.Request, p principal) error {
		if q := r.URL.Query(); q.Get("cursor") == "" || q.Get("wait") == "" || q.Get("wait") == "0s" || q.Get("wait") == "0" {
			if !pool.acquire(r.Context().Done()) {
				return nil // the client went away
			}
			defer pool.release()
			if r.Context().Err() != nil {
				return nil // went away as its turn came
			}
			if deadline > 0 {
				http.NewResponseController(w).SetWriteDeadline(time.Now().Add(deadline))
			}
		}
		return fn(w, r, p)
	}
}
