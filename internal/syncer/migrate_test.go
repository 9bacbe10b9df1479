package syncer

import (
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

// toOldCache rewrites the device's cache as a daemon from before IoT Edge's
// names kept it: the agent's identity, twin and queued patches under $agent.
func toOldCache(t *testing.T, st store.Store) {
	t.Helper()
	var ops []store.Op
	rec, err := st.Get("identities/" + agentModule)
	if err != nil {
		t.Fatal(err)
	}
	ops = append(ops, store.PutOp("identities/"+legacyAgentModule, []byte(strings.Replace(string(rec.Value), `"moduleId":"$edgeAgent"`, `"moduleId":"$agent"`, 1)), 0),
		store.DeleteOp(rec.Key, rec.Version))
	if rec, err = st.Get("twins/" + agentModule); err != nil {
		t.Fatal(err)
	}
	tw := new(twin.Twin)
	if err := tw.UnmarshalJSON(rec.Value); err != nil {
		t.Fatal(err)
	}
	tw.ModuleID = legacyAgentModule
	b, _ := tw.MarshalJSON()
	ops = append(ops, store.PutOp("twins/"+legacyAgentModule, b, 0), store.DeleteOp(rec.Key, rec.Version))
	recs, err := st.List("outbox/")
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		ops = append(ops, store.PutOp(rec.Key, []byte(strings.ReplaceAll(string(rec.Value), `"moduleId":"$edgeAgent"`, `"moduleId":"$agent"`)), rec.Version))
	}
	if _, err := st.Txn(ops...); err != nil {
		t.Fatal(err)
	}
}

// TestMigratesOldCache starts a syncer on a data dir written in the old
// layout, with a reported patch for $agent still queued: it is $edgeAgent's,
// locally and at the hub.
func TestMigratesOldCache(t *testing.T) {
	f := setup(t)
	s := syncedOnce(t, f)
	if _, err := s.PatchReported(agentModule, []byte(`{"lastDesiredVersion":7}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.writeTwins(); err != nil {
		t.Fatal(err)
	}
	toOldCache(t, f.st)
	if _, err := f.st.Get("twins/$agent"); err != nil {
		t.Fatalf("old layout: %v", err)
	}

	s, err := New(f.device, f.st, "d")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"identities/$agent", "twins/$agent"} {
		if _, err := f.st.Get(key); err == nil {
			t.Errorf("%s left after the migration", key)
		}
	}
	mods, err := s.Modules()
	if err != nil || mods[0].ModuleID != agentModule || mods[0].PrimaryKey == "" {
		t.Fatalf("modules after migration: %+v %v", mods, err)
	}
	tw, err := s.Twin(agentModule)
	if err != nil || tw.ModuleID != agentModule || !strings.Contains(string(tw.ReportedJSON()), `"lastDesiredVersion":7`) {
		t.Fatalf("$edgeAgent twin after migration: %v", err)
	}
	pending, err := s.pending(0)
	if err != nil || len(pending) != 1 || pending[0].ModuleID != agentModule {
		t.Fatalf("outbox after migration: %+v %v", pending, err)
	}
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	hubTwin, err := f.hub.Client(t).GetTwin(t.Context(), "d", agentModule)
	if err != nil || !strings.Contains(string(hubTwin.ReportedJSON()), `"lastDesiredVersion":7`) {
		t.Errorf("hub's $edgeAgent reported after the flush: %s %v", hubTwin.ReportedJSON(), err)
	}
	// Nothing left to migrate: a second start writes nothing.
	if migrated, err := migrateLegacyNames(f.st); migrated || err != nil {
		t.Errorf("second migration: %v %v", migrated, err)
	}
}
