package broker

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/outpost-edge/outpost/internal/syncer"
	"github.com/outpost-edge/outpost/internal/twin"
)

// answerGet answers $iothub/twin/GET with the module's twin as the device
// has it: {"desired": {…, "$version": n}, "reported": {…, "$version": m}}.
func (b *Broker) answerGet(s *session, rid string) {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	t, err := b.twinOf(m)
	if err != nil {
		b.answerError(s, rid, err)
		return
	}
	desired := t.DesiredJSON()
	body := make([]byte, 0, len(desired)+len(t.ReportedJSON())+64)
	body = append(body, `{"desired":`...)
	body = append(body, withVersion(desired, t.DesiredVersion())...)
	body = append(body, `,"reported":`...)
	body = append(body, withVersion(t.ReportedJSON(), t.ReportedVersion())...)
	body = append(body, '}')
	b.publish(s, responseTopic(200, rid, 0), body)
	s.sent = nil // the whole twin: what was sent before it no longer counts
	m.known, m.version, m.desired = true, t.DesiredVersion(), desired
}

// answerPatch applies a reported patch through the syncer, which returns
// once it is durable (and queued for the hub), then answers 204 with the
// new reported $version. A patch that breaks the twin limits gets 400
// naming the JSON path, and changes nothing.
func (b *Broker) answerPatch(s *session, rid string, patch []byte) {
	if len(patch) > MaxPatchSize {
		b.answer(s, rid, 400, fmt.Sprintf("the reported patch is %d bytes; at most %d are allowed", len(patch), MaxPatchSize), "")
		return
	}
	t, err := b.patchReported(s.m, patch)
	if err != nil {
		b.answerError(s, rid, err)
		return
	}
	b.publish(s, responseTopic(204, rid, t.ReportedVersion()), nil)
}

// answerError answers a twin request that failed, with IoT Hub's statuses.
func (b *Broker) answerError(s *session, rid string, err error) {
	var te *twin.Error
	switch {
	case errors.As(err, &te):
		b.log.Info("broker: refused a reported patch", s.m.kind(), s.m.id, "remote", s.remote, "path", te.Path, "reason", te.Reason)
		b.answer(s, rid, 400, "invalid reported patch: "+te.Error(), te.Path)
	case errors.Is(err, syncer.ErrUnknownModule):
		b.answer(s, rid, 404, fmt.Sprintf("the device has no twin for module %q", s.m.id), "")
	case errors.Is(err, syncer.ErrUnknownChild):
		b.answer(s, rid, 404, fmt.Sprintf("the device has no twin for its child device %q", s.m.id), "")
	case errors.Is(err, syncer.ErrNotSynced):
		b.answer(s, rid, 503, "the device has not synced with its hub yet: retry once it has", "")
	default:
		b.log.Error("broker: a twin request failed", s.m.kind(), s.m.id, "err", err)
		b.answer(s, rid, 500, "the device could not serve the twin request: "+err.Error(), "")
	}
}

// answer sends an error response: {"message": …[, "path": …]}.
func (b *Broker) answer(s *session, rid string, status int, message, path string) {
	body, _ := json.Marshal(struct {
		Message string `json:"message"`
		Path    string `json:"path,omitempty"`
	}{message, path})
	b.publish(s, responseTopic(status, rid, 0), body)
}

// catchUp sends a connected module that subscribed to desired changes what
// changed since the desired version it last got. hint, when not 0, is the
// version a change notice named: nothing is read when the module has it.
func (b *Broker) catchUp(m *moduleState, hint int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sess
	if s == nil || !subscribedToDesired(s.cl) || (hint != 0 && m.known && hint <= m.version) {
		return
	}
	t, err := b.twinOf(m)
	if err != nil {
		b.log.Warn("broker: read a twin for its desired changes", m.kind(), m.id, "err", err)
		return
	}
	v, desired := t.DesiredVersion(), t.DesiredJSON()
	if m.known && v == m.version {
		return
	}
	patch := desired // the module's version is unknown, or the twin was made anew
	if m.known && v > m.version {
		if patch, err = twin.Diff(m.desired, desired); err != nil {
			b.log.Error("broker: diff desired properties", m.kind(), m.id, "err", err)
			patch = desired
		}
	}
	b.publish(s, desiredTopic(v), withVersion(patch, v))
	b.sentTo(s, m)
	m.known, m.version, m.desired = true, v, desired
}

// twinOf returns the twin of a client: a module's twin, or a child's device
// twin.
func (b *Broker) twinOf(m *moduleState) (*twin.Twin, error) {
	if m.child {
		return b.cfg.Twins.ChildTwin(m.id)
	}
	return b.cfg.Twins.Twin(m.id)
}

// patchReported applies a client's reported patch through the syncer.
func (b *Broker) patchReported(m *moduleState, patch []byte) (*twin.Twin, error) {
	if m.child {
		return b.cfg.Twins.PatchChildReported(m.id, patch)
	}
	return b.cfg.Twins.PatchReported(m.id, patch)
}

// kind names a client's kind in logs: "module" or "child" (a child device).
func (m *moduleState) kind() string {
	if m.child {
		return "child"
	}
	return "module"
}
