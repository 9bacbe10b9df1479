package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/registry"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

const syncPrefix = hubapi.Prefix

// deviceAccess allows only the device itself (or a policy with
// serviceConnect, for tools and tests).
func deviceAccess(p principal, id string) error {
	if p.isDevice(id) || p.can(ServiceConnect) {
		return nil
	}
	return forbidden(p, "sync device "+id)
}

// sync serves GET …/devices/{id}/sync?cursor=C&wait=D.
func (h *Hub) sync(w http.ResponseWriter, r *http.Request, p principal) error {
	id := r.PathValue("id")
	if err := deviceAccess(p, id); err != nil {
		return err
	}
	q := r.URL.Query()
	cursor := q.Get("cursor")
	since, err := cursorRevision(cursor)
	if err != nil {
		return err
	}
	var wait time.Duration
	if s := q.Get("wait"); s != "" {
		if wait, err = time.ParseDuration(s); err != nil || wait < 0 {
			return errorf(http.StatusBadRequest, "ArgumentInvalid", "wait=%q: want a duration such as 30s", s)
		}
		wait = min(wait, hubapi.MaxWait)
	}
	var timeout <-chan time.Time
	for {
		changed := h.notify.wait(id) // before reading, so no change is missed
		state, err := h.deviceState(id, since)
		if err != nil {
			return err
		}
		if wait == 0 || cursor == "" || state.Cursor != cursor {
			writeJSON(w, http.StatusOK, state)
			return nil
		}
		if timeout == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-changed:
		case <-timeout:
			writeJSON(w, http.StatusOK, state)
			return nil
		case <-r.Context().Done():
			// The client left, or the hub is shutting down: never answer
			// 200 without a state, which a device could read as "no modules".
			return errorf(http.StatusServiceUnavailable, "ServerBusy", "the hub is shutting down: sync again")
		}
	}
}

// cursorRevision reads the store revision out of a cursor ("" is 0).
func cursorRevision(cursor string) (int64, error) {
	if cursor == "" {
		return 0, nil
	}
	rev, _, ok := strings.Cut(cursor, ".")
	n, err := strconv.ParseInt(rev, 10, 64)
	if !ok || err != nil || n < 0 {
		return 0, errorf(http.StatusBadRequest, "ArgumentInvalid", "cursor %q is not one the hub gave out: sync again without a cursor", cursor)
	}
	return n, nil
}

// deviceState reads what device id should know, with the module twins
// written after revision since (all of them when since is 0).
func (h *Hub) deviceState(id string, since int64) (*hubapi.Sync, error) {
	dev, err := h.st.Get("devices/" + id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("%w: device %q", registry.ErrNotFound, id)
		}
		return nil, err
	}
	var d registry.Device
	if err := json.Unmarshal(dev.Value, &d); err != nil {
		return nil, err
	}
	mods, err := h.st.List("modules/" + id + "/")
	if err != nil {
		return nil, err
	}
	twins, err := h.st.List("twins/" + id + "/")
	if err != nil {
		return nil, err
	}

	s := &hubapi.Sync{
		Full:    since == 0,
		Device:  hubapi.SyncDevice{DeviceID: d.DeviceID, GenerationID: d.GenerationID, Status: d.Status, ETag: registry.ETagOf(dev.Version)},
		Modules: make([]hubapi.SyncModule, 0, len(mods)),
		Twins:   []json.RawMessage{},
	}
	rev := dev.Version
	sum := fnv.New64a()
	fmt.Fprintf(sum, "%s\x00%d\x00", d.Status, dev.Version)
	for _, rec := range mods {
		var m registry.Module
		if err := json.Unmarshal(rec.Value, &m); err != nil {
			return nil, err
		}
		rev = max(rev, rec.Version)
		fmt.Fprintf(sum, "%s\x00%d\x00", m.ModuleID, rec.Version)
		hm := hubapi.SyncModule{ModuleID: m.ModuleID, GenerationID: m.GenerationID, ManagedBy: m.ManagedBy, ETag: registry.ETagOf(rec.Version)}
		if k := m.Authentication.SymmetricKey; k != nil {
			hm.PrimaryKey, hm.SecondaryKey = k.PrimaryKey, k.SecondaryKey
		}
		s.Modules = append(s.Modules, hm)
	}
	have := map[string]bool{}
	for _, rec := range twins {
		rev = max(rev, rec.Version)
		have[strings.TrimPrefix(rec.Key, "twins/"+id+"/")] = true
		if rec.Version > since {
			s.Twins = append(s.Twins, rec.Value)
		}
	}
	if s.Full { // modules whose twin was never written have a fresh one
		for _, m := range s.Modules {
			if !have[m.ModuleID] {
				b, err := twin.New(id, m.ModuleID, h.now()).MarshalJSON()
				if err != nil {
					return nil, err
				}
				s.Twins = append(s.Twins, b)
			}
		}
	}
	s.Cursor = fmt.Sprintf("%d.%x", rev, sum.Sum64())
	return s, nil
}

// syncRecord is the hub's memory of a device's uploads.
type syncRecord struct {
	ReportedSeq int64 `json:"reportedSeq"`
}

// uploadReported serves POST …/devices/{id}/reported: it applies each patch
// whose seq is above the last one applied, in order, and acks the batch.
// The seq is stored after the patch it covers; a crash between the two
// makes a retry apply that patch again, which changes nothing, since a merge
// patch applied twice gives what it gave once.
func (h *Hub) uploadReported(w http.ResponseWriter, r *http.Request, p principal) error {
	id := r.PathValue("id")
	if !p.isDevice(id) {
		return forbidden(p, "upload reported properties for device "+id)
	}
	var batch hubapi.ReportedBatch
	if err := readJSON(r, &batch); err != nil {
		return err
	}
	defer h.lockDevice(id)()
	key := "devicesync/" + id
	var sr syncRecord
	version := int64(0)
	if rec, err := h.st.Get(key); err == nil {
		if err := json.Unmarshal(rec.Value, &sr); err != nil {
			return err
		}
		version = rec.Version
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	ack := hubapi.ReportedAck{Acked: sr.ReportedSeq}
	prev := int64(0)
	for i, pt := range batch.Patches {
		if pt.Seq <= prev {
			return errorf(http.StatusBadRequest, "ArgumentInvalid", "patches[%d]: seq %d does not follow %d: a batch must be in order", i, pt.Seq, prev)
		}
		prev = pt.Seq
	}
	now, start := h.now().UTC(), ack.Acked
	for _, pt := range batch.Patches {
		if pt.Seq <= sr.ReportedSeq {
			continue // applied before: this is a retry
		}
		_, err := h.reg.UpdateTwin(id, pt.ModuleID, "", func(t *twin.Twin) (bool, error) {
			return t.PatchReported(pt.Patch, now)
		})
		var te *twin.Error
		switch {
		case err == nil:
		case errors.Is(err, registry.ErrNotFound), errors.Is(err, registry.ErrInvalid), errors.As(err, &te):
			ack.Rejected = append(ack.Rejected, hubapi.Rejected{Seq: pt.Seq, Error: err.Error()})
		default:
			if ack.Acked == start {
				return err // nothing done: the device retries the batch
			}
			h.log.Warn("reported upload stopped part way", "device", id, "seq", pt.Seq, "err", err)
			writeJSON(w, http.StatusOK, ack) // what is acked so far holds; the device sends the rest again
			return nil
		}
		sr.ReportedSeq = pt.Seq
		b, _ := json.Marshal(sr)
		v, err := h.st.Put(key, b, version)
		if err != nil {
			return fmt.Errorf("record reported seq: %w", err) // a concurrent upload: the device retries
		}
		version = v
		ack.Acked = pt.Seq
	}
	writeJSON(w, http.StatusOK, ack)
	return nil
}

// lockDevice serialises a device's uploads, so that retries racing each
// other apply each patch once and in order.
func (h *Hub) lockDevice(id string) (unlock func()) {
	v, _ := h.uploads.LoadOrStore(id, &sync.Mutex{})
	mu := v.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}
