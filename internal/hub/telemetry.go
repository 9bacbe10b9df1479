package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/store"
)

// Device telemetry. A device uploads its queued messages in batches
// (POST …/devices/{id}/messages/upstream); the hub keeps each batch as one
// record under telemetry/{id}/{first seq}, numbering messages with its own
// seq, and drops the oldest batches past a bound (telemetryMaxMessages or
// telemetryMaxBytes per device). telemetry-state/{id} holds the device's
// queue epoch and the last device seq taken, so a batch sent again (the
// device did not get the answer) is not kept twice. Both are written in one
// Txn, and the answer goes out after it: the hub acknowledges only what is
// durable. GET /devices/{id}/messages reads them (owner or registryRead),
// with ?wait= a long poll for the next ones.

const (
	telemetryMaxMessages = 50000
	telemetryMaxBytes    = 64 << 20
	telemetryDefaultList = 1000
	telemetryMaxWait     = 60 * time.Second
)

func telemetryPrefix(id string) string   { return "telemetry/" + id + "/" }
func telemetryStateKey(id string) string { return "telemetry-state/" + id }

type telemetryState struct {
	Epoch    string `json:"epoch"`
	Acked    uint64 `json:"acked"`   // the device's last seq taken
	Next     uint64 `json:"next"`    // the hub's next seq
	Messages int    `json:"count"`   // kept now
	Bytes    int64  `json:"bytes"`   // of their bodies
	Dropped  int64  `json:"dropped"` // removed past the bound
}

type telemetryBatch struct {
	Messages []hubapi.Message `json:"messages"`
}

func (h *Hub) uploadMessages(w http.ResponseWriter, r *http.Request, p principal) error {
	id := r.PathValue("id")
	if !p.isDevice(id) {
		return forbidden(p, "upload messages for device "+id)
	}
	var up hubapi.MessageUpload
	if err := readJSON(r, &up); err != nil {
		return err
	}
	if up.Epoch == "" || len(up.Epoch) > 64 {
		return errorf(http.StatusBadRequest, "ArgumentInvalid", "epoch %.80q: want 1 to 64 characters naming the device's queue", up.Epoch)
	}
	var prev uint64
	for i, m := range up.Messages {
		if m.Seq <= prev {
			return errorf(http.StatusBadRequest, "ArgumentInvalid", "messages[%d].seq: %d does not follow %d: a batch must be in order", i, m.Seq, prev)
		}
		prev = m.Seq
	}
	h.presence.touch(id)
	defer h.lockDevice(id)()
	var st telemetryState
	stVersion := int64(0)
	if rec, err := h.st.Get(telemetryStateKey(id)); err == nil {
		if err := json.Unmarshal(rec.Value, &st); err != nil {
			return fmt.Errorf("record %s: %w", rec.Key, err)
		}
		stVersion = rec.Version
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if st.Epoch != up.Epoch {
		st.Epoch, st.Acked = up.Epoch, 0
	}
	if st.Next == 0 {
		st.Next = 1
	}
	now := h.now().UTC()
	var batch telemetryBatch
	for _, m := range up.Messages {
		if m.Seq <= st.Acked {
			continue // had it already
		}
		m.DeviceID = id
		m.Seq = st.Next
		m.ReceivedTime = now
		st.Next++
		st.Messages++
		st.Bytes += int64(len(m.Body))
		batch.Messages = append(batch.Messages, m)
	}
	if len(up.Messages) > 0 {
		st.Acked = max(st.Acked, up.Messages[len(up.Messages)-1].Seq)
	}
	if len(batch.Messages) > 0 {
		ops, err := h.trimTelemetry(id, &st)
		if err != nil {
			return err
		}
		b, _ := json.Marshal(batch)
		ops = append(ops, store.PutOp(telemetryPrefix(id)+fmt.Sprintf("%016x", batch.Messages[0].Seq), b, 0))
		sb, _ := json.Marshal(st)
		ops = append(ops, store.PutOp(telemetryStateKey(id), sb, stVersion))
		if _, err := h.st.Txn(ops...); err != nil {
			return err // nothing kept: the device sends the batch again
		}
	}
	writeJSON(w, http.StatusOK, hubapi.MessageUploadResult{Acked: st.Acked})
	return nil
}

// trimTelemetry returns the deletes that keep st within the bounds once a
// batch is added (st counts it already).
func (h *Hub) trimTelemetry(id string, st *telemetryState) ([]store.Op, error) {
	if st.Messages <= telemetryMaxMessages && st.Bytes <= telemetryMaxBytes {
		return nil, nil
	}
	recs, err := h.st.List(telemetryPrefix(id))
	if err != nil {
		return nil, err
	}
	var ops []store.Op
	for _, rec := range recs {
		if st.Messages <= telemetryMaxMessages && st.Bytes <= telemetryMaxBytes {
			break
		}
		var b telemetryBatch
		if err := json.Unmarshal(rec.Value, &b); err != nil {
			return nil, fmt.Errorf("record %s: %w", rec.Key, err)
		}
		for _, m := range b.Messages {
			st.Messages--
			st.Bytes -= int64(len(m.Body))
			st.Dropped++
		}
		ops = append(ops, store.DeleteOp(rec.Key, rec.Version))
	}
	return ops, nil
}

// listMessages serves GET /devices/{id}/messages?after=&limit=&moduleId=&wait=.
func (h *Hub) listMessages(w http.ResponseWriter, r *http.Request, p principal) error {
	id := r.PathValue("id")
	if err := readAccess(p, id, "", RegistryRead, ServiceConnect); err != nil {
		return err
	}
	q := r.URL.Query()
	var after uint64
	limit := telemetryDefaultList
	var wait time.Duration
	var err error
	if v := q.Get("after"); v == "latest" {
		if after, err = h.latestMessage(id); err != nil {
			return err
		}
	} else if v != "" {
		if after, err = strconv.ParseUint(v, 10, 64); err != nil {
			return errorf(http.StatusBadRequest, "ArgumentInvalid", "after=%q: want a message seq (a whole number ≥ 0) or latest", v)
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 10000 {
			return errorf(http.StatusBadRequest, "ArgumentInvalid", "limit=%q: want 1 to 10000", v)
		}
	}
	if v := q.Get("wait"); v != "" {
		if wait, err = time.ParseDuration(v); err != nil || wait < 0 || wait > telemetryMaxWait {
			return errorf(http.StatusBadRequest, "ArgumentInvalid", "wait=%q: want a duration up to %s, such as 30s", v, telemetryMaxWait)
		}
	}
	module := q.Get("moduleId")
	if _, err := h.reg.GetDevice(id); err != nil {
		return err
	}
	ctx := r.Context()
	var watch <-chan store.Event
	if wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		ctx = wctx
		watch = h.st.Watch(wctx, telemetryPrefix(id)) // before reading: nothing falls between
	}
	for {
		list, err := h.readMessages(id, module, after, limit)
		if err != nil {
			return err
		}
		if len(list.Messages) > 0 || watch == nil {
			writeJSON(w, http.StatusOK, list)
			return nil
		}
		select {
		case <-ctx.Done():
			writeJSON(w, http.StatusOK, list)
			return nil
		case _, ok := <-watch:
			if !ok {
				watch = nil
			}
		}
	}
}

func (h *Hub) readMessages(id, module string, after uint64, limit int) (hubapi.MessageList, error) {
	out := hubapi.MessageList{Messages: []hubapi.Message{}, Next: after}
	recs, err := h.st.List(telemetryPrefix(id))
	if err != nil {
		return out, err
	}
	for i, rec := range recs {
		if i+1 < len(recs) { // skip batches wholly at or before after
			first, _ := strconv.ParseUint(strings.TrimPrefix(recs[i+1].Key, telemetryPrefix(id)), 16, 64)
			if first <= after+1 {
				continue
			}
		}
		var b telemetryBatch
		if err := json.Unmarshal(rec.Value, &b); err != nil {
			return out, fmt.Errorf("record %s: %w", rec.Key, err)
		}
		for _, m := range b.Messages {
			if m.Seq <= after {
				continue
			}
			out.Next = m.Seq
			if module != "" && m.ModuleID != module {
				continue
			}
			out.Messages = append(out.Messages, m)
			if len(out.Messages) == limit {
				return out, nil
			}
		}
	}
	return out, nil
}

// bodyLimit is the largest body the hub reads for r.
func bodyLimit(r *http.Request) int64 {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/messages/upstream") {
		return hubapi.MaxMessageUpload
	}
	return MaxBodySize
}

// latestMessage is the seq of the device's last message, 0 for none.
func (h *Hub) latestMessage(id string) (uint64, error) {
	rec, err := h.st.Get(telemetryStateKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var st telemetryState
	if err := json.Unmarshal(rec.Value, &st); err != nil {
		return 0, fmt.Errorf("record %s: %w", rec.Key, err)
	}
	return max(st.Next, 1) - 1, nil
}
