package registry

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

// GetTwin returns the twin of a module, or of the device itself when
// moduleID is "". A twin that was never written is a fresh one, created on
// its first write.
func (r *Registry) GetTwin(deviceID, moduleID string) (*twin.Twin, error) {
	t, _, err := r.loadTwin(deviceID, moduleID)
	return t, err
}

func (r *Registry) loadTwin(deviceID, moduleID string) (*twin.Twin, int64, error) {
	t, version, err := r.twinRecord(deviceID, moduleID)
	if err != nil || version != 0 {
		return t, version, err
	}
	// No twin yet: the identity must exist.
	if moduleID == "" {
		_, err = r.GetDevice(deviceID)
	} else {
		_, err = r.GetModule(deviceID, moduleID)
	}
	if err != nil {
		return nil, 0, err
	}
	return t, 0, nil
}

// twinRecord returns the stored twin and its version, or a fresh twin and 0
// when there is none.
func (r *Registry) twinRecord(deviceID, moduleID string) (*twin.Twin, int64, error) {
	rec, err := r.getShared(twinKey(deviceID, moduleID))
	if errors.Is(err, store.ErrNotFound) {
		return twin.New(deviceID, moduleID, r.now()), 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	t, err := r.decodeTwin(rec, true)
	return t, rec.Version, err
}

// decodeTwin returns the twin a stored twin record holds; keep: keep it in
// the twin cache, for a twin about to be written (not for one only read
// in passing, which would push out those).
func (r *Registry) decodeTwin(rec store.Record, keep bool) (*twin.Twin, error) {
	if t := r.twins.get(rec.Key, rec.Version); t != nil {
		return t, nil
	}
	// The twin decoder gets its own copy: the store's must stay as it is,
	// and the twin may keep parts of what it decodes.
	t := new(twin.Twin)
	if err := t.UnmarshalJSON(bytes.Clone(rec.Value)); err != nil {
		return nil, fmt.Errorf("record %s: %w", rec.Key, err)
	}
	if keep {
		r.twins.put(rec.Key, rec.Version, len(rec.Value), t)
	}
	return t, nil
}

// UpdateTwin changes a twin with fn and stores it, if the twin's etag still
// matches ifMatch ("" or "*" for any: concurrent writers are then retried, so
// no write is lost). fn reports whether it changed anything; a twin fn did
// not change is not written.
func (r *Registry) UpdateTwin(deviceID, moduleID, ifMatch string, fn func(t *twin.Twin) (bool, error)) (*twin.Twin, error) {
	ifMatch = strings.Trim(ifMatch, `"`)
	for {
		t, version, err := r.loadTwin(deviceID, moduleID)
		if err != nil {
			return nil, err
		}
		if ifMatch != "" && ifMatch != "*" && ifMatch != t.ETag {
			return nil, fmt.Errorf("%w: twin %s: etag %q does not match the current %q", ErrPrecondition, twinName(deviceID, moduleID), ifMatch, t.ETag)
		}
		changed, err := fn(t)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if !changed {
			return t, nil
		}
		b, err := t.MarshalJSON()
		if err != nil {
			return nil, err
		}
		key := twinKey(deviceID, moduleID)
		var v int64
		if version != 0 {
			v, err = r.st.Put(key, b, version) // the record goes with its identity: its version is the check
		} else {
			var check store.Op
			if check, err = r.IdentityCheck(deviceID, moduleID); err != nil {
				return nil, err
			}
			v, err = r.st.Txn(check, store.PutOp(key, b, 0))
		}
		if err != nil {
			if errors.Is(err, store.ErrConflict) {
				continue // someone wrote in between; their etag check (if any) decides
			}
			return nil, err
		}
		r.twins.put(key, v, len(b), t)
		return t, nil
	}
}

func twinName(deviceID, moduleID string) string {
	if moduleID == "" {
		return deviceID
	}
	return deviceID + "/" + moduleID
}

// LoadTwin returns a twin and the version of its record (0 for a twin never
// written), for a caller that writes it in a store Txn with TwinOp.
func (r *Registry) LoadTwin(deviceID, moduleID string) (*twin.Twin, int64, error) {
	return r.loadTwin(deviceID, moduleID)
}

// TwinOps are the Txn ops that write t, if its record is still at version
// (0: there is none yet, and its device or module must still exist).
func (r *Registry) TwinOps(t *twin.Twin, version int64) ([]store.Op, error) {
	b, err := t.MarshalJSON()
	if err != nil {
		return nil, err
	}
	put := store.PutOp(twinKey(t.DeviceID, t.ModuleID), b, version)
	if version != 0 {
		return []store.Op{put}, nil
	}
	check, err := r.IdentityCheck(t.DeviceID, t.ModuleID)
	if err != nil {
		return nil, err
	}
	return []store.Op{check, put}, nil
}

// IdentityCheck is the Txn op that fails unless the device (moduleID "") or
// module is still there, at the version it has now. A record kept beside
// an identity and deleted with it (its twin, a module's configuration
// state) written for the first time takes it along: a delete of the
// identity racing the write then leaves nothing behind. (A record already
// there needs no check: its own expected version fails once it is gone.)
func (r *Registry) IdentityCheck(deviceID, moduleID string) (store.Op, error) {
	key, gone := deviceKey(deviceID), deviceNotFound(deviceID)
	if moduleID != "" {
		key, gone = moduleKey(deviceID, moduleID), moduleNotFound(deviceID, moduleID)
	}
	rec, err := r.getShared(key)
	if errors.Is(err, store.ErrNotFound) {
		return store.Op{}, gone
	}
	if err != nil {
		return store.Op{}, err
	}
	return store.CheckOp(key, rec.Version), nil
}
