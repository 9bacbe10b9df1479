package syncer

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

// Children returns the device's children (the devices whose parent it is)
// with their keys, as last synced.
func (s *Syncer) Children() ([]hubapi.SyncChild, error) {
	if !s.Synced() {
		return nil, ErrNotSynced
	}
	return listJSON[hubapi.SyncChild](s.st, "children/")
}

// Child returns one child's identity, or an error wrapping ErrUnknownChild.
func (s *Syncer) Child(deviceID string) (hubapi.SyncChild, error) {
	if !s.Synced() {
		return hubapi.SyncChild{}, ErrNotSynced
	}
	var c hubapi.SyncChild
	rec, err := s.st.Get("children/" + deviceID)
	if err != nil {
		if isNotFound(err) {
			return c, fmt.Errorf("%w: %q", ErrUnknownChild, deviceID)
		}
		return c, err
	}
	if err := json.Unmarshal(rec.Value, &c); err != nil {
		return c, fmt.Errorf("record %s: %w", rec.Key, err)
	}
	return c, nil
}

// ChildTwin returns a child's device twin as the device knows it.
func (s *Syncer) ChildTwin(deviceID string) (*twin.Twin, error) {
	if !s.Synced() {
		return nil, ErrNotSynced
	}
	if deviceID == "" {
		return nil, fmt.Errorf("%w: no device id", ErrUnknownChild)
	}
	return s.localTwin(childRef(deviceID))
}

// applyChildren stores the children the hub sent (nil: unchanged, so the
// ones stored) and removes those gone with their twins; it returns the
// children now, and whether any identity changed. The caller holds s.mu
// and s.twMu.
func (s *Syncer) applyChildren(sent []hubapi.SyncChild) (map[string]bool, bool, error) {
	have, err := s.st.List("children/")
	if err != nil {
		return nil, false, err
	}
	now := map[string]bool{}
	if sent == nil {
		for _, rec := range have {
			now[strings.TrimPrefix(rec.Key, "children/")] = true
		}
		return now, false, nil
	}
	for _, c := range sent {
		now[c.DeviceID] = true
	}
	changed := false
	old := map[string]string{}
	for _, rec := range have {
		id := strings.TrimPrefix(rec.Key, "children/")
		old[id] = string(rec.Value)
		if now[id] {
			continue
		}
		changed = true
		if err := deleteIfThere(s.st, rec.Key); err != nil {
			return nil, false, err
		}
		if err := deleteIfThere(s.st, twinKey(childRef(id))); err != nil {
			return nil, false, err
		}
		s.clean(childRef(id), nil)
	}
	for _, c := range sent {
		b, err := json.Marshal(c)
		if err != nil {
			return nil, false, err
		}
		if old[c.DeviceID] == string(b) {
			continue
		}
		changed = true
		if _, err := s.st.Put("children/"+c.DeviceID, b, store.Any); err != nil {
			return nil, false, err
		}
	}
	return now, changed, nil
}

// isNotFound reports whether a store read found no record (or the key was
// not one the store takes: an id that cannot be there).
func isNotFound(err error) bool {
	return errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid)
}
