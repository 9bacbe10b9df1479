package syncer

import (
	"testing"
)

// BenchmarkStatusDeepOutbox: what one Status() (link, outbox, twins) and
// one Outbox() cost with 10,000 reported patches queued offline (10
// modules, 1,000 each), as `outpost status`, the management API's
// GET /status and its /events stream pay them.
//
//	go test ./internal/syncer -run '^$' -bench StatusDeepOutbox -benchmem
func BenchmarkStatusDeepOutbox(b *testing.B) {
	const modules, each = 10, 1000
	_, _, s, ids := benchSyncer(b, modules) // not run: nothing drains the outbox
	queueEach(b, s, ids, each)
	b.Run("Status", func(b *testing.B) {
		for b.Loop() {
			st, err := s.Status()
			if err != nil || st.Outbox.Patches != modules*each {
				b.Fatalf("status: %+v %v", st.Outbox, err)
			}
		}
	})
	b.Run("Outbox", func(b *testing.B) {
		for b.Loop() {
			ob, err := s.Outbox()
			if err != nil || ob.Patches != modules*each {
				b.Fatalf("outbox: %+v %v", ob, err)
			}
		}
	})
}
