package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/outpost-edge/outpost/internal/deployment"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

// MigrateSystemModules brings records written by an older outpost to
// today's layout:
//
//   - the agent's module, once named $agent, is $edgeAgent: its identity and
//     its twin move to the new name (the moduleId inside them too), keys,
//     generation id, versions and properties unchanged;
//   - a device without an $edgeHub module gets one, its twin's desired
//     properties the $edgeHub part of a native manifest
//     (deployment.DefaultHubDesired) when the device has a deployment.
//
// It is one store Txn (on a store that takes a bounded number of ops in
// one, etcd, as many as it takes, each with whole devices): a crash leaves
// each device's old records or its new ones, never a mix, and the next call
// does what is left. A store in today's layout is not written. It returns
// how many devices it changed.
func (r *Registry) MigrateSystemModules() (int, error) {
	for attempt := 1; ; attempt++ {
		groups, err := r.migrationOps()
		if err != nil || len(groups) == 0 {
			return 0, err
		}
		err = r.txnGroups(groups)
		if errors.Is(err, store.ErrConflict) && attempt < maxAttempts {
			continue // written meanwhile: read again
		}
		if err != nil {
			return 0, fmt.Errorf("migrate the system modules of %d devices: %w", len(groups), err)
		}
		return len(groups), nil
	}
}

// txnGroups writes groups of ops, each all or none: in one Txn, or where
// the store takes fewer ops in one, in as many as it takes, never splitting
// a group.
func (r *Registry) txnGroups(groups [][]store.Op) error {
	limit := store.TxnLimit(r.st)
	var ops []store.Op
	for _, g := range groups {
		if limit > 0 && len(ops) > 0 && len(ops)+len(g) > limit {
			if _, err := r.st.Txn(ops...); err != nil {
				return err
			}
			ops = ops[:0]
		}
		ops = append(ops, g...)
	}
	_, err := r.st.Txn(ops...)
	return err
}

// migrationOps returns MigrateSystemModules' writes, each conditional on the
// version read, a group for each device they change.
// It runs at every start of the hub, so a store already migrated costs a
// few lookups a device: no device is decoded and no twin read.
func (r *Registry) migrationOps() ([][]store.Op, error) {
	var groups [][]store.Op
	err := r.rangeAll("devices/", func(rec store.Record) error {
		id := strings.TrimPrefix(rec.Key, "devices/")
		dops, err := r.deviceMigrationOps(id)
		if err != nil {
			return fmt.Errorf("device %q: %w", id, err)
		}
		if len(dops) > 0 {
			groups = append(groups, dops)
		}
		return nil
	})
	return groups, err
}

func (r *Registry) deviceMigrationOps(id string) ([]store.Op, error) {
	var ops []store.Op
	exists := func(key string) (bool, error) {
		_, err := r.getShared(key)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	// move renames the record at key(id, $agent) to key(id, $edgeAgent) with
	// rename, unless the new one is there already (then the old one just goes).
	move := func(key func(id, mid string) string, rename func([]byte) ([]byte, error)) error {
		old, err := r.st.Get(key(id, LegacyAgentModule))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		has, err := exists(key(id, AgentModule))
		if err != nil {
			return err
		}
		if !has {
			b, err := rename(old.Value)
			if err != nil {
				return fmt.Errorf("record %s: %w", old.Key, err)
			}
			ops = append(ops, store.PutOp(key(id, AgentModule), b, 0))
		}
		ops = append(ops, store.DeleteOp(old.Key, old.Version))
		return nil
	}
	if err := move(moduleKey, func(b []byte) ([]byte, error) {
		var m Module
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, err
		}
		m.ModuleID = AgentModule
		return marshalIdentity(m)
	}); err != nil {
		return nil, err
	}
	var agentTwin *twin.Twin // $agent's, when it moves; else read if needed
	if err := move(twinKey, func(b []byte) ([]byte, error) {
		t := new(twin.Twin)
		if err := t.UnmarshalJSON(b); err != nil {
			return nil, err
		}
		t.ModuleID = AgentModule
		agentTwin = t
		return t.MarshalJSON()
	}); err != nil {
		return nil, err
	}
	// $edgeHub, which older devices lack.
	hasHub, err := exists(moduleKey(id, HubModule))
	if err != nil || hasHub {
		return ops, err
	}
	_, b, err := r.newModule(Module{DeviceID: id, ModuleID: HubModule, ManagedBy: ManagedBy})
	if err != nil {
		return nil, err
	}
	ops = append(ops, store.PutOp(moduleKey(id, HubModule), b, 0))
	if agentTwin == nil {
		if agentTwin, _, err = r.twinRecord(id, AgentModule); err != nil {
			return nil, err
		}
	}
	if len(agentTwin.Desired()) == 0 {
		return append(ops, store.DeleteOp(twinKey(id, HubModule), store.Any)), nil
	}
	hub := twin.New(id, HubModule, r.now())
	if _, err := hub.ReplaceDesired(deployment.DefaultHubDesired(), r.now()); err != nil {
		return nil, err
	}
	tb, err := hub.MarshalJSON()
	if err != nil {
		return nil, err
	}
	return append(ops, store.PutOp(twinKey(id, HubModule), tb, store.Any)), nil
}
