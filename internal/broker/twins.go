package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

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
	b.reply(s, responseTopic(200, rid, 0), body)
	s.sent = nil // the whole twin: what was sent before it no longer counts
	m.known, m.version, m.desired = true, t.DesiredVersion(), desired
}

// answerPatch applies a reported patch through the syncer, which returns
// once it is durable (and queued for the hub), then answers 204 with the
// new reported $version. A patch that breaks the twin limits gets 400
// naming the JSON path, and changes nothing.
func (b *Broker) answerPatch(s *session, rid string, patch []byte) {
	if len(patch) > MaxPatchSize {
		s.m.mu.Lock()
		defer s.m.mu.Unlock()
		b.answer(s, rid, 400, fmt.Sprintf("the reported patch is %d bytes; at most %d are allowed", len(patch), MaxPatchSize), "")
		return
	}
	t, err := b.patchReported(s.m, patch)
	s.m.mu.Lock() // not before: a patch's write holds up no desired change
	defer s.m.mu.Unlock()
	if err != nil {
		b.answerError(s, rid, err)
		return
	}
	b.reply(s, responseTopic(204, rid, t.ReportedVersion()), nil)
}

// answerError answers a twin request that failed, with IoT Hub's statuses
// (the caller holds s.m.mu).
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

// answer sends an error response: {"message": …[, "path": …]} (the caller
// holds s.m.mu).
func (b *Broker) answer(s *session, rid string, status int, message, path string) {
	body, _ := json.Marshal(struct {
		Message string `json:"message"`
		Path    string `json:"path,omitempty"`
	}{message, path})
	b.reply(s, responseTopic(status, rid, 0), body)
}

// A twin answer goes out at QoS 0, and the Azure SDKs connect again to
// renew their tokens: a request sent just before gets its answer on a
// connection the SDK no longer reads, and Microsoft's Node SDK keeps such a
// request pending forever (no timeout, no resend), its next reports queued
// behind it. So an answer goes to the module's current connection, and the
// answers of the last unreadWindow of a connection that ended go again on
// the next one (an SDK drops an answer to a request it does not have).

// maxUnanswered bounds the answers kept for a module's next connection.
const maxUnanswered = 32

// sentAnswer is a twin answer and when it was sent.
type sentAnswer struct {
	at    time.Time
	topic string
	body  []byte
}

// reply sends a twin answer on the module's current connection: s, or the
// one that took its place; with none, the next one gets it (the caller
// holds s.m.mu).
func (b *Broker) reply(s *session, topic string, body []byte) {
	m, to := s.m, s
	if m.sess != s { // s ended, or another connection took over
		to = m.sess
	}
	a := sentAnswer{at: b.now(), topic: topic, body: body}
	if to == nil {
		m.unanswered = keepLast(append(m.unanswered, a), maxUnanswered)
		return
	}
	b.sendAnswer(to, a)
}

func (b *Broker) sendAnswer(s *session, a sentAnswer) {
	b.publish(s, a.topic, a.body)
	i := 0
	for i < len(s.answers) && a.at.Sub(s.answers[i].at) > unreadWindow {
		i++
	}
	s.answers = keepLast(append(s.answers[i:], a), maxUnanswered)
}

// keepAnswers keeps for the next connection the answers s sent within
// unreadWindow of its end (the caller holds s.m.mu).
func (b *Broker) keepAnswers(s *session) {
	cutoff := b.now().Add(-unreadWindow)
	for _, a := range s.answers {
		if a.at.After(cutoff) {
			s.m.unanswered = append(s.m.unanswered, a)
		}
	}
	s.m.unanswered = keepLast(s.m.unanswered, maxUnanswered)
	s.answers = nil
}

// resendAnswers sends a new connection the answers kept for it, once it is
// subscribed to them: a persistent session is at once (the Azure SDKs'); a
// clean one is not yet, and gets none (the caller holds s.m.mu).
func (b *Broker) resendAnswers(s *session) {
	kept := s.m.unanswered
	s.m.unanswered = nil
	if _, ok := s.cl.State.Subscriptions.Get(filterResponses); !ok {
		return
	}
	for _, a := range kept {
		b.sendAnswer(s, a)
	}
}

func keepLast(as []sentAnswer, n int) []sentAnswer {
	if len(as) > n {
		return slices.Clone(as[len(as)-n:])
	}
	return as
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
