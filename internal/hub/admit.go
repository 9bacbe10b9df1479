package hub

import (
	"net/http"
	"strings"
)

// syncSlots is how many syncs that answer at once (a device's first sync
// after it connects, or one without a wait) the hub serves at a time.
// When 10,000 devices connect at once, each first sync is a few store
// reads; on etcd all of them at once queued in the client and etcd until
// they ran out of their 5 s (503, the device retries: a storm amplified).
// A sync waiting its turn costs nothing; the newest go first (slotPool).
const syncSlots = 64

// admitSyncs bounds the syncs next serves that answer at once; long polls
// (a cursor and a wait) are not bounded, as they park.
func admitSyncs(next http.Handler, pool *slotPool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, syncPrefix+"/devices/") && strings.HasSuffix(r.URL.Path, "/sync") {
			if q := r.URL.Query(); q.Get("cursor") == "" || q.Get("wait") == "" || q.Get("wait") == "0s" || q.Get("wait") == "0" {
				if !pool.acquire(r.Context().Done()) {
					return // the client went away
				}
				defer pool.release()
				if r.Context().Err() != nil {
					return // went away as its turn came
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}
