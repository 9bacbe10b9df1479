package registry

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/deployment"
	"github.com/outpost-edge/outpost/internal/registry/registrytest"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/store/storetest"
	"github.com/outpost-edge/outpost/internal/twin"
)

// oldDevices fills a registry with n devices, every other one deployed to with
// a reported status, and rewrites them in the old layout.
func oldDevices(t testing.TB, r *Registry, st store.Store, n int) {
	t.Helper()
	m, _, err := deployment.Parse([]byte("schemaVersion: '1.0'\nmodules:\n  m: {image: busybox}\n"), "m.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		id := fmt.Sprintf("d%03d", i)
		if _, err := r.CreateDevice(Device{DeviceID: id}); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := r.ApplyDeployment(id, m); err != nil {
				t.Fatal(err)
			}
			if _, err := r.UpdateTwin(id, AgentModule, "", func(tw *twin.Twin) (bool, error) {
				return tw.PatchReported([]byte(`{"lastDesiredVersion":1,"lastDesiredStatus":{"code":200}}`), time.Now())
			}); err != nil {
				t.Fatal(err)
			}
		}
		registrytest.ToOldLayout(t, st, id)
	}
}

// systemKeys counts the system modules' records by name.
func systemKeys(t testing.TB, st store.Store) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, k := range keys(t, st) {
		for _, mid := range []string{LegacyAgentModule, AgentModule, HubModule} {
			if strings.HasSuffix(k, "/"+mid) {
				out[strings.SplitN(k, "/", 2)[0]+"/"+mid]++
			}
		}
	}
	return out
}

func TestMigrateSystemModules(t *testing.T) {
	r, dir := newRegistry(t)
	if _, err := r.CreateDevice(Device{DeviceID: "edge"}); err != nil {
		t.Fatal(err)
	}
	oldDevices(t, r, r.st, 2) // d000 deployed, d001 not
	before, err := r.st.Get(moduleKey("d000", LegacyAgentModule))
	if err != nil {
		t.Fatalf("old layout: %v", err)
	}
	oldAgent, _ := decodeRecord[Module](before)
	oldTwin, _, err := r.twinRecord("d000", LegacyAgentModule)
	if err != nil {
		t.Fatal(err)
	}

	// Opened again, as a hub of the new release does.
	r.st.(*store.FileStore).Close()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r = New(st)
	n, err := r.MigrateSystemModules()
	if err != nil || n != 2 {
		t.Fatalf("MigrateSystemModules = %d, %v; want 2 devices (d000, d001; edge is new already)", n, err)
	}
	if got, want := systemKeys(t, st), map[string]int{"modules/$edgeAgent": 3, "modules/$edgeHub": 3, "twins/$edgeAgent": 1, "twins/$edgeHub": 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("records after migration: %v, want %v", got, want)
	}
	agent, err := r.GetModule("d000", AgentModule)
	if err != nil {
		t.Fatal(err)
	}
	if agent.ModuleID != AgentModule || agent.GenerationID != oldAgent.GenerationID || !reflect.DeepEqual(agent.Authentication, oldAgent.Authentication) {
		t.Errorf("$edgeAgent %+v, want the $agent identity %+v renamed", agent, oldAgent)
	}
	tw, err := r.GetTwin("d000", AgentModule)
	if err != nil {
		t.Fatal(err)
	}
	if tw.ModuleID != AgentModule || tw.ETag != oldTwin.ETag || string(tw.DesiredJSON()) != string(oldTwin.DesiredJSON()) || string(tw.ReportedJSON()) != string(oldTwin.ReportedJSON()) ||
		tw.DesiredVersion() != oldTwin.DesiredVersion() {
		t.Errorf("$edgeAgent twin %s / %s, want the $agent twin's %s / %s", tw.DesiredJSON(), tw.ReportedJSON(), oldTwin.DesiredJSON(), oldTwin.ReportedJSON())
	}
	if _, _, err := deployment.FromAgentDesired(tw.DesiredJSON()); err != nil {
		t.Errorf("migrated deployment: %v", err)
	}
	// The deployed device's $edgeHub holds a native manifest's $edgeHub part; the other's nothing.
	if hub, err := r.GetTwin("d000", HubModule); err != nil || string(hub.DesiredJSON()) != string(deployment.DefaultHubDesired()) {
		t.Errorf("d000's $edgeHub desired %s (%v), want %s", hub.DesiredJSON(), err, deployment.DefaultHubDesired())
	}
	if hub, err := r.GetTwin("d001", HubModule); err != nil || len(hub.Desired()) != 0 {
		t.Errorf("d001's $edgeHub twin: %v", err)
	}
	// Done once: nothing more to do, nothing written.
	rev := keysAndVersions(t, st)
	if n, err := r.MigrateSystemModules(); err != nil || n != 0 {
		t.Fatalf("second MigrateSystemModules = %d, %v", n, err)
	}
	if !reflect.DeepEqual(rev, keysAndVersions(t, st)) {
		t.Error("a second migration wrote records")
	}
}

func keysAndVersions(t testing.TB, st store.Store) map[string]int64 {
	t.Helper()
	recs, err := st.List("")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, r := range recs {
		out[r.Key] = r.Version
	}
	return out
}

const migrateChildEnv = "OUTPOST_REGISTRY_MIGRATE_CHILD" // the data dir

// TestMigrateChild is the process TestMigrateCrash kills while it migrates.
func TestMigrateChild(t *testing.T) {
	dir := os.Getenv(migrateChildEnv)
	if dir == "" {
		t.Skip("runs as a child of TestMigrateCrash")
	}
	st, err := store.Open(dir)
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(3)
	}
	fmt.Println("READY")
	n, err := New(st).MigrateSystemModules()
	fmt.Println("DONE", n, err)
	st.Close()
}

// TestMigrateCrash kills a migrating process with SIGKILL at random moments
// and checks that the store holds either the old layout or the new one, and
// that migrating again finishes the job.
func TestMigrateCrash(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs SIGKILL")
	}
	const devices = 40
	template := t.TempDir()
	st, err := store.Open(template)
	if err != nil {
		t.Fatal(err)
	}
	oldDevices(t, New(st), st, devices)
	st.Close()
	oldLayout := map[string]int{"modules/$agent": devices, "twins/$agent": devices / 2}
	newLayout := map[string]int{"modules/$edgeAgent": devices, "modules/$edgeHub": devices, "twins/$edgeAgent": devices / 2, "twins/$edgeHub": devices / 2}

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 0))
	var whole time.Duration // how long one migration takes: kills are spread over it
	seen := map[string]int{}
	for i := range 12 {
		dir := t.TempDir()
		if err := os.CopyFS(dir, os.DirFS(template)); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestMigrateChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), migrateChildEnv+"="+dir)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		for sc.Scan() && sc.Text() != "READY" {
			if strings.HasPrefix(sc.Text(), "ERROR") {
				t.Fatal(sc.Text())
			}
		}
		start := time.Now()
		if i == 0 {
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "DONE") && sc.Text() != fmt.Sprintf("DONE %d <nil>", devices) {
					t.Fatalf("child: %s", sc.Text())
				}
			}
			whole = time.Since(start)
		} else {
			time.Sleep(time.Duration(rnd.Int64N(int64(whole)*5/4 + 1)))
			cmd.Process.Kill()
			for sc.Scan() {
			}
		}
		cmd.Wait()

		st, err := store.Open(dir) // replays a committed Txn's journal
		if err != nil {
			t.Fatalf("round %d: open after the kill: %v", i, err)
		}
		switch got := systemKeys(t, st); {
		case reflect.DeepEqual(got, oldLayout):
			seen["old"]++
		case reflect.DeepEqual(got, newLayout):
			seen["new"]++
		default:
			t.Fatalf("round %d: a mix of layouts after a kill: %v", i, got)
		}
		if _, err := New(st).MigrateSystemModules(); err != nil {
			t.Fatalf("round %d: migrate again: %v", i, err)
		}
		if got := systemKeys(t, st); !reflect.DeepEqual(got, newLayout) {
			t.Fatalf("round %d: after migrating again: %v", i, got)
		}
		st.Close()
	}
	t.Logf("after a kill: %v (one migration takes %v)", seen, whole)
}

// The records a migration writes are those a new device has.
func TestMigratedLikeNew(t *testing.T) {
	r, _ := newRegistry(t)
	oldDevices(t, r, r.st, 1)
	if _, err := r.MigrateSystemModules(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateDevice(Device{DeviceID: "fresh"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"d000", "fresh"} {
		mods, err := r.ListModules(id)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(mods)
		if len(mods) < 2 || mods[0].ModuleID != AgentModule || mods[1].ModuleID != HubModule || mods[1].ManagedBy != ManagedBy {
			t.Errorf("%s: modules %s", id, b)
		}
	}
}

// TestMigrateInParts: on a store that takes few ops in one Txn (etcd's
// --max-txn-ops), the migration of many devices goes in Txns of whole
// devices: each device migrated, none half.
func TestMigrateInParts(t *testing.T) {
	r, _ := newRegistry(t)
	oldDevices(t, r, r.st, 20)
	r = New(&storetest.Limited{Store: r.st, N: 16})
	n, err := r.MigrateSystemModules()
	if err != nil || n != 20 {
		t.Fatalf("MigrateSystemModules = %d, %v; want 20 devices, 16 ops a Txn", n, err)
	}
	if got, want := systemKeys(t, r.st), map[string]int{"modules/$edgeAgent": 20, "modules/$edgeHub": 20, "twins/$edgeAgent": 10, "twins/$edgeHub": 10}; !reflect.DeepEqual(got, want) {
		t.Errorf("records after migration: %v, want %v", got, want)
	}
	if n, err := r.MigrateSystemModules(); err != nil || n != 0 {
		t.Errorf("again: %d, %v; want nothing to do", n, err)
	}
}
