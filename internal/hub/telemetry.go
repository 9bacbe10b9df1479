package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/registry"
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
		if m.DeviceID != "" && m.DeviceID != id {
			if err := identity.ValidateDeviceID(m.DeviceID); err != nil {
				return errorf(http.StatusBadRequest, "ArgumentInvalid", "messages[%d].deviceId: %v", i, err)
			}
		}
		if m.Seq <= prev {
			return errorf(http.StatusBadRequest, "ArgumentInvalid", "messages[%d].seq: %d does not follow %d: a batch must be in order", i, m.Seq, prev)
		}
		prev = m.Seq
	}
	h.presence.touch(id)
	refused, err := h.leafSenders(id, up.Messages)
	if err != nil {
		return err
	}
	// The uploading device's state (its queue's epoch and acked seq) and
	// the state of each child it forwards for, locked parent first, then
	// the children in order: the parent relation has no cycles, so two
	// uploads never lock in opposite orders.
	targets := []string{id}
	for _, m := range up.Messages {
		if d := m.DeviceID; d != "" && d != id && refused[d] == "" && !slices.Contains(targets, d) {
			targets = append(targets, d)
		}
	}
	slices.Sort(targets[1:])
	for _, t := range targets {
		defer h.lockDevice(t)()
	}
	// Where the store takes few ops in one Txn (etcd's --max-txn-ops), an
	// upload that would need more files the messages of its first devices
	// only, fewer each time, and acks those: the edge device sends the rest
	// again (one with hundreds of leaf devices).
	msgs, leaves := up.Messages, len(targets)
	var result hubapi.MessageUploadResult
	var ops []store.Op
	for {
		var err error
		if ops, result, err = h.fileMessages(id, up.Epoch, msgs, refused); err != nil {
			return err
		}
		if h.txnLimit == 0 || len(ops) <= h.txnLimit || len(msgs) == 1 {
			break
		}
		leaves /= 2
		next := msgsOfFirst(msgs, id, refused, leaves)
		if len(next) == len(msgs) { // the device's own messages (old ones to trim): fewer of them
			next = msgs[:len(msgs)/2]
		}
		msgs = next
	}
	if len(ops) > 0 {
		if _, err := h.st.Txn(ops...); err != nil {
			return err // nothing kept: the device sends the batch again
		}
	}
	for _, r := range result.Rejected {
		h.log.Warn("telemetry: an edge device uploaded a message of a device that is not its child: rejected", "device", id, "sender", r.DeviceID, "seq", r.Seq, "error", r.Error)
	}
	writeJSON(w, http.StatusOK, result)
	return nil
}

// fileMessages files msgs, an upload's messages (or the first of them) from
// edge device id, each under its sender, and returns the store writes that
// keep them with the result to answer. The caller holds the device lock of
// every sender.
func (h *Hub) fileMessages(id, epoch string, msgs []hubapi.Message, refused map[string]string) ([]store.Op, hubapi.MessageUploadResult, error) {
	var result hubapi.MessageUploadResult
	targets := []string{id}
	for _, m := range msgs {
		if d := m.DeviceID; d != "" && d != id && refused[d] == "" && !slices.Contains(targets, d) {
			targets = append(targets, d)
		}
	}
	slices.Sort(targets[1:])
	files := map[string]*telemetryFiling{}
	for _, t := range targets {
		f, err := h.readTelemetryState(t)
		if err != nil {
			return nil, result, err
		}
		files[t] = f
	}
	own := files[id]
	if own.st.Epoch != epoch {
		own.st.Epoch, own.st.Acked = epoch, 0
	}
	now := h.now().UTC()
	for _, m := range msgs {
		if m.Seq <= own.st.Acked {
			continue // had it already
		}
		target := id
		if m.DeviceID != "" && m.DeviceID != id {
			target = m.DeviceID
		}
		if why := refused[target]; why != "" {
			result.Rejected = append(result.Rejected, hubapi.RejectedMessage{Seq: m.Seq, DeviceID: target, Error: why})
			continue
		}
		if target != id && m.ModuleID != "" {
			result.Rejected = append(result.Rejected, hubapi.RejectedMessage{Seq: m.Seq, DeviceID: target, Error: fmt.Sprintf("a leaf device's message has no module (moduleId %q): the edge device forwards only the leaf's own telemetry", m.ModuleID)})
			continue
		}
		f := files[target]
		m.DeviceID = target
		m.Seq = f.st.Next
		m.ReceivedTime = now
		f.st.Next++
		f.st.Messages++
		f.st.Bytes += int64(len(m.Body))
		f.batch.Messages = append(f.batch.Messages, m)
	}
	if len(msgs) > 0 {
		own.st.Acked = max(own.st.Acked, msgs[len(msgs)-1].Seq)
	}
	result.Acked = own.st.Acked
	var ops []store.Op
	for _, t := range targets {
		f := files[t]
		if len(f.batch.Messages) == 0 {
			continue
		}
		trim, err := h.trimTelemetry(t, &f.st)
		if err != nil {
			return nil, result, err
		}
		ops = append(ops, trim...)
		b, _ := json.Marshal(f.batch)
		ops = append(ops, store.PutOp(telemetryPrefix(t)+fmt.Sprintf("%016x", f.batch.Messages[0].Seq), b, 0))
		if t != id {
			sb, _ := json.Marshal(f.st)
			ops = append(ops, store.PutOp(telemetryStateKey(t), sb, f.version))
			if ops, err = h.telemetryCheck(ops, t, f.version); err != nil {
				return nil, result, err
			}
		}
	}
	if len(ops) > 0 || len(result.Rejected) > 0 { // the acked seq moved
		sb, _ := json.Marshal(own.st)
		ops = append(ops, store.PutOp(telemetryStateKey(id), sb, own.version))
		var err error
		if ops, err = h.telemetryCheck(ops, id, own.version); err != nil {
			return nil, result, err
		}
	}
	return ops, result, nil
}

// msgsOfFirst returns the messages of msgs up to the first from a leaf
// device past the first n that appear (at least one message).
func msgsOfFirst(msgs []hubapi.Message, id string, refused map[string]string, n int) []hubapi.Message {
	var seen []string
	for i, m := range msgs {
		d := m.DeviceID
		if d == "" || d == id || refused[d] != "" || slices.Contains(seen, d) {
			continue
		}
		if len(seen) == n {
			return msgs[:max(i, 1)]
		}
		seen = append(seen, d)
	}
	return msgs
}

// telemetryCheck adds to ops the check that device id is still there when
// its telemetry state is written for the first time (version 0): one there
// is deleted with the device, and its version is the check.
func (h *Hub) telemetryCheck(ops []store.Op, id string, version int64) ([]store.Op, error) {
	if version != 0 {
		return ops, nil
	}
	check, err := h.reg.IdentityCheck(id, "")
	if err != nil {
		return nil, err
	}
	return append(ops, check), nil
}

// telemetryFiling is one device's telemetry state and the batch an upload
// adds for it.
type telemetryFiling struct {
	st      telemetryState
	version int64 // of the state record, 0 for none yet
	batch   telemetryBatch
}

func (h *Hub) readTelemetryState(id string) (*telemetryFiling, error) {
	f := &telemetryFiling{}
	if rec, err := h.st.Get(telemetryStateKey(id)); err == nil {
		if err := json.Unmarshal(rec.Value, &f.st); err != nil {
			return nil, fmt.Errorf("record %s: %w", rec.Key, err)
		}
		f.version = rec.Version
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if f.st.Next == 0 {
		f.st.Next = 1
	}
	return f, nil
}

// leafSenders checks the devices other than the uploading edge device id
// that msgs name: each must be a child of id (its leaf devices, whose
// messages it forwards). It returns why each one that is not is refused.
func (h *Hub) leafSenders(id string, msgs []hubapi.Message) (map[string]string, error) {
	refused := map[string]string{}
	checked := map[string]bool{}
	for _, m := range msgs {
		d := m.DeviceID
		if d == "" || d == id || checked[d] {
			continue
		}
		checked[d] = true
		dev, err := h.reg.GetDevice(d)
		switch {
		case errors.Is(err, registry.ErrNotFound):
			refused[d] = fmt.Sprintf("device %s does not exist at the hub (deleted since the message was queued?)", d)
		case err != nil:
			return nil, err
		case dev.ParentID() != id:
			refused[d] = fmt.Sprintf("device %s is not a child of edge device %s (its parent is %s); an edge device forwards only its own children's messages: outpost device set-parent %s %s", d, id, orNone(dev.ParentID()), d, id)
		}
	}
	return refused, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
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
