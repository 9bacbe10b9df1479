// Package registrytest writes hub records as older outpost releases wrote
// them, for tests of their migration.
package registrytest

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

// ToOldLayout rewrites a device's records in st as outpost wrote them before
// it used IoT Edge's system module names: the agent's module and twin under
// $agent (the moduleId inside them too), and no $edgeHub.
func ToOldLayout(t testing.TB, st store.Store, deviceID string) {
	t.Helper()
	const oldName, agent, hub = "$agent", "$edgeAgent", "$edgeHub"
	var ops []store.Op
	move := func(kind string, rename func([]byte) []byte) {
		rec, err := st.Get(kind + "/" + deviceID + "/" + agent)
		if errors.Is(err, store.ErrNotFound) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, store.PutOp(kind+"/"+deviceID+"/"+oldName, rename(rec.Value), 0), store.DeleteOp(rec.Key, rec.Version))
	}
	move("modules", func(b []byte) []byte {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		m["moduleId"], _ = json.Marshal(oldName)
		out, _ := json.Marshal(m)
		return out
	})
	move("twins", func(b []byte) []byte {
		tw := new(twin.Twin)
		if err := tw.UnmarshalJSON(b); err != nil {
			t.Fatal(err)
		}
		tw.ModuleID = oldName
		out, err := tw.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		return out
	})
	ops = append(ops, store.DeleteOp("modules/"+deviceID+"/"+hub, store.Any), store.DeleteOp("twins/"+deviceID+"/"+hub, store.Any))
	if _, err := st.Txn(ops...); err != nil {
		t.Fatal(err)
	}
}
