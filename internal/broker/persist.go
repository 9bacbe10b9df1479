package broker

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/internal/store"
)

// What the broker keeps of a module across daemon restarts, in
// Config.Store under savedPrefix{moduleId}:
//
//   - the subscriptions of a persistent session (CONNECT with clean session
//     0), written when they change, because the Azure SDKs connect that way
//     and do not subscribe again after a reconnect, as IoT Hub and IoT Edge
//     keep them;
//   - the desired $version and properties the module last got, written when
//     its connection ends (the daemon stopping ends them all), so that after
//     a restart it gets a patch from there; after a crash it gets its full
//     desired properties instead.
//
// The same is kept of a child device under savedChildPrefix{deviceId}.
const (
	savedPrefix      = "broker/modules/"
	savedChildPrefix = "broker/children/"
)

// savedKey is where what is kept of m is.
func savedKey(m *moduleState) string {
	if m.child {
		return savedChildPrefix + m.id
	}
	return savedPrefix + m.id
}

type saved struct {
	Subscriptions  []string        `json:"subscriptions,omitempty"`
	DesiredVersion int64           `json:"desiredVersion,omitempty"`
	Desired        json.RawMessage `json:"desired,omitempty"`
}

// restore loads what was saved of m once; the caller holds m.mu.
func (b *Broker) restore(m *moduleState) {
	if m.loaded || b.cfg.Store == nil {
		return
	}
	m.loaded = true
	rec, err := b.cfg.Store.Get(savedKey(m))
	if errors.Is(err, store.ErrNotFound) {
		return
	}
	var sv saved
	if err == nil {
		err = json.Unmarshal(rec.Value, &sv)
	}
	if err != nil {
		b.log.Warn("broker: read what was kept of a module's session; starting afresh", "module", m.id, "err", err)
		return
	}
	m.subs = sv.Subscriptions
	if !m.known && sv.DesiredVersion > 0 && len(sv.Desired) > 0 {
		m.known, m.version, m.desired = true, sv.DesiredVersion, sv.Desired
	}
}

// save writes what is kept of m; the caller holds m.mu.
func (b *Broker) save(m *moduleState) {
	if b.cfg.Store == nil {
		return
	}
	sv := saved{Subscriptions: m.subs}
	if m.known {
		sv.DesiredVersion, sv.Desired = m.version, m.desired
	}
	v, _ := json.Marshal(sv)
	if _, err := b.cfg.Store.Put(savedKey(m), v, store.Any); err != nil {
		b.log.Warn("broker: keep a module's session", "module", m.id, "err", err)
	}
}

// forget removes what is kept of a module (or child) the device no longer
// has.
func (b *Broker) forget(m *moduleState) {
	if b.cfg.Store == nil {
		return
	}
	if err := b.cfg.Store.Delete(savedKey(m), store.Any); err != nil && !errors.Is(err, store.ErrNotFound) {
		b.log.Warn("broker: forget a client's session", m.kind(), m.id, "err", err)
	}
}

// forgetGone removes what is kept under prefix (savedPrefix for modules,
// savedChildPrefix for children) of clients the device does not have and
// that are not connected.
func (b *Broker) forgetGone(prefix string, child bool, has func(id string) bool) {
	if b.cfg.Store == nil {
		return
	}
	recs, err := b.cfg.Store.List(prefix)
	if err != nil {
		b.log.Warn("broker: list the kept sessions", "prefix", prefix, "err", err)
		return
	}
	for _, rec := range recs {
		id := strings.TrimPrefix(rec.Key, prefix)
		if has(id) {
			continue
		}
		b.mu.Lock()
		m := b.clients(child)[id]
		b.mu.Unlock()
		if m == nil {
			b.forget(&moduleState{id: id, child: child})
		}
	}
}

// startSession restores or clears the kept subscriptions of a new
// connection: a clean session drops them; a persistent one the broker no
// longer holds in memory (the daemon restarted) gets them back.
func (b *Broker) startSession(s *session, clean bool) {
	m, cl := s.m, s.cl
	m.mu.Lock()
	defer m.mu.Unlock()
	b.restore(m)
	m.persistent = !clean
	switch {
	case clean && len(m.subs) > 0:
		m.subs = nil
		b.save(m)
	case !clean && cl.State.Subscriptions.Len() == 0 && len(m.subs) > 0:
		for _, f := range m.subs {
			sub := packets.Subscription{Filter: f}
			b.srv.Topics.Subscribe(cl.ID, sub)
			cl.State.Subscriptions.Add(f, sub)
		}
		b.log.Info("broker: restored the subscriptions of a persistent session", "module", m.id, "filters", m.subs)
	}
	b.resendAnswers(s)
}

// subscriptionsChanged keeps the subscriptions of a persistent session.
func (b *Broker) subscriptionsChanged(s *session) {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.persistent || m.sess != s {
		return
	}
	subs := currentSubscriptions(s.cl)
	if !slices.Equal(subs, m.subs) {
		m.subs = subs
		b.save(m)
	}
}

func currentSubscriptions(cl *mqtt.Client) []string {
	var subs []string
	for f := range cl.State.Subscriptions.GetAll() {
		subs = append(subs, f)
	}
	slices.Sort(subs)
	return subs
}
