package syncer

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

// The agent's module was named $agent before outpost used IoT Edge's
// names; a hub of this release has renamed it $edgeAgent.
const (
	legacyAgentModule = "$agent"
	agentModule       = "$edgeAgent"
)

// migrateLegacyNames brings a data dir written by an older daemon to
// today's names, in one store Txn (a crash leaves the old records or the new
// ones, and the next start does what is left): the $agent identity and twin
// become $edgeAgent's (the moduleId inside them too), queued reported
// patches for $agent are for $edgeAgent. The sync cursor stays (the device
// keeps running offline): the hub's migration wrote the renamed records anew,
// so the next sync brings them. It reports whether it changed anything.
func migrateLegacyNames(st store.Store) (bool, error) {
	var ops []store.Op
	rename := func(prefix string, fn func([]byte) ([]byte, error)) error {
		rec, err := st.Get(prefix + legacyAgentModule)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		b, err := fn(rec.Value)
		if err != nil {
			return fmt.Errorf("record %s: %w", rec.Key, err)
		}
		ops = append(ops, store.PutOp(prefix+agentModule, b, store.Any), store.DeleteOp(rec.Key, rec.Version))
		return nil
	}
	if err := rename("identities/", func(b []byte) ([]byte, error) {
		var m hubapi.SyncModule
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, err
		}
		m.ModuleID = agentModule
		return json.Marshal(m)
	}); err != nil {
		return false, err
	}
	if err := rename("twins/", func(b []byte) ([]byte, error) {
		t := new(twin.Twin)
		if err := t.UnmarshalJSON(b); err != nil {
			return nil, err
		}
		t.ModuleID = agentModule
		seq, err := recordOutboxSeq(b)
		if err != nil {
			return nil, err
		}
		return twinRecord(t, seq)
	}); err != nil {
		return false, err
	}
	recs, err := st.List("outbox/")
	if err != nil {
		return false, err
	}
	for _, rec := range recs {
		r, err := decodeOutbox(rec)
		if err != nil {
			return false, err
		}
		changed := false
		for i := range r.Patches {
			if r.Patches[i].ModuleID == legacyAgentModule {
				r.Patches[i].ModuleID, changed = agentModule, true
			}
		}
		if !changed {
			continue
		}
		b, err := json.Marshal(r)
		if err != nil {
			return false, err
		}
		ops = append(ops, store.PutOp(rec.Key, b, rec.Version))
	}
	if len(ops) == 0 {
		return false, nil
	}
	if _, err := st.Txn(ops...); err != nil {
		return false, fmt.Errorf("rename $agent to $edgeAgent in the device's cache: %w", err)
	}
	return true, nil
}
