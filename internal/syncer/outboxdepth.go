package syncer

import (
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/store"
)

// outboxDepth is what Outbox reports, kept in memory so that reading it
// costs nothing however deep the outbox is: it is computed once from the
// store in New, then changed under Syncer.mu in the same critical section
// as each store write to the outbox (commit adds a record, flush acks
// patches and removes records), only once that write succeeded, so it
// follows the store exactly.
type outboxDepth struct {
	recs    []depthRecord // the records with a patch the hub has not acked, oldest first
	patches int
	bytes   int
	byRef   map[string]int // patches by the ref of their twin (see twinKey)
}

// depthRecord is one outbox record: when it was queued, and the sizes of
// its patches the hub has not acked, in seq order.
type depthRecord struct {
	queued  time.Time
	patches []depthPatch
}

type depthPatch struct {
	seq   int64
	bytes int
	ref   string
}

// add counts the patches of r with seq above acked. Records come in seq
// order: from the store's key order at start, then one commit at a time.
func (d *outboxDepth) add(r outboxRecord, acked int64) {
	dr := depthRecord{queued: r.Queued}
	for _, p := range r.Patches {
		if p.Seq > acked {
			ref := patchRef(p)
			dr.patches = append(dr.patches, depthPatch{p.Seq, len(p.Patch), ref})
			d.patches++
			d.bytes += len(p.Patch)
			if d.byRef == nil {
				d.byRef = map[string]int{}
			}
			d.byRef[ref]++
		}
	}
	if len(dr.patches) > 0 {
		d.recs = append(d.recs, dr)
	}
}

// ack forgets the patches with seq up to acked: the hub holds them. The
// hub acks in seq order, so they are at the front; a record partly acked
// stays, with its queued time, until its last patch goes.
func (d *outboxDepth) ack(acked int64) {
	for len(d.recs) > 0 {
		r := &d.recs[0]
		i := 0
		for i < len(r.patches) && r.patches[i].seq <= acked {
			d.patches--
			d.bytes -= r.patches[i].bytes
			if ref := r.patches[i].ref; d.byRef[ref] <= 1 {
				delete(d.byRef, ref)
			} else {
				d.byRef[ref]--
			}
			i++
		}
		if i < len(r.patches) {
			r.patches = r.patches[i:]
			return
		}
		d.recs[0] = depthRecord{}
		d.recs = d.recs[1:]
	}
	d.recs = nil // let go of the drained slice's array
}

// queuedByRef returns how many patches wait for each twin (by ref; twins
// with none are left out), a copy.
func (d *outboxDepth) queuedByRef() map[string]int {
	out := make(map[string]int, len(d.byRef))
	for ref, n := range d.byRef {
		out[ref] = n
	}
	return out
}

func (d *outboxDepth) status() OutboxStatus {
	ob := OutboxStatus{Patches: d.patches, Bytes: d.bytes}
	if len(d.recs) > 0 {
		ob.Oldest = d.recs[0].queued
	}
	return ob
}

// readOutbox decodes the whole outbox, once, for New: its patches with seq
// above after, oldest first, and its depth past acked.
func readOutbox(st store.Store, after, acked int64) ([]hubapi.ReportedPatch, outboxDepth, error) {
	var d outboxDepth
	recs, err := st.List("outbox/")
	if err != nil {
		return nil, d, err
	}
	out := make([]hubapi.ReportedPatch, 0, len(recs))
	for _, rec := range recs {
		r, err := decodeOutbox(rec)
		if err != nil {
			return nil, d, err
		}
		for _, p := range r.Patches {
			if p.Seq > after {
				out = append(out, p)
			}
		}
		d.add(r, acked)
	}
	return out, d, nil
}
