package hub_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/store/etcdstore/etcdtest"
)

// desiredN reads the desired property n of d/m's twin in a sync, -1 if absent.
func desiredN(t *testing.T, s *hubapi.Sync) int {
	t.Helper()
	tw := twinOf(t, s, "m")
	if tw == nil {
		return -1
	}
	var v struct {
		N *int `json:"n"`
	}
	if err := json.Unmarshal(tw.DesiredJSON(), &v); err != nil || v.N == nil {
		return -1
	}
	return *v.N
}

// TestReplicasFailures runs 3 hub replicas on a 3-member etcd cluster: a replica
// stopped while patches go through it loses none that it acknowledged and the
// device goes on through a survivor; with one member stopped writes go on; with
// two they fail with 503 saying etcd lacks a quorum; once the members are back,
// everything acknowledged is there and writes go on.
func TestReplicasFailures(t *testing.T) {
	c := etcdtest.Start(t, 3)
	hs := startReplicas(t, c, 3)
	owner := []*hubclient.Client{via(t, hs[0], hs[0].ConnectionString), via(t, hs[1], hs[1].ConnectionString), via(t, hs[2], hs[2].ConnectionString)}
	d, err := owner[0].CreateDevice(ctx, hubapi.Device{DeviceID: "d"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := owner[0].CreateModule(ctx, hubapi.Module{DeviceID: "d", ModuleID: "m"}); err != nil {
		t.Fatal(err)
	}
	key := d.Authentication.SymmetricKey.PrimaryKey
	dev1 := via(t, hs[1], hs[1].DeviceConnectionString("d", "", key))
	s, err := dev1.Sync(ctx, "d", "", 0)
	if err != nil {
		t.Fatal(err)
	}

	// Patches through replica 2 while it is stopped: every acknowledged one is kept.
	acked := make(chan int, 1000)
	go func() {
		defer close(acked)
		for i := 1; ; i++ {
			if _, err := owner[2].PatchTwin(ctx, "d", "m", []byte(`{"properties":{"desired":{"n":`+strconv.Itoa(i)+`}}}`), ""); err != nil {
				return
			}
			acked <- i
		}
	}()
	<-acked // at least one went through
	<-acked
	hs[2].Stop()
	last := 0
	for i := range acked {
		last = i
	}
	s, err = dev1.Sync(ctx, "d", s.Cursor, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n := desiredN(t, s); n < last {
		t.Fatalf("after replica 2 stopped, the device sees n=%d, but n=%d was acknowledged", n, last)
	}

	// The device moves to replica 0 (its replica 1 goes too) and gets the next patch.
	hs[1].Stop()
	dev0 := via(t, hs[0], hs[0].DeviceConnectionString("d", "", key))
	if _, err := owner[0].PatchTwin(ctx, "d", "m", []byte(`{"properties":{"desired":{"n":1000}}}`), ""); err != nil {
		t.Fatal(err)
	}
	if s, err = dev0.Sync(ctx, "d", s.Cursor, 0); err != nil || desiredN(t, s) != 1000 {
		t.Fatalf("sync through replica 0 after its replica went: n=%d, %v", desiredN(t, s), err)
	}

	// One etcd member down: writes go on.
	c.Stop(2)
	if _, err := owner[0].PatchTwin(ctx, "d", "m", []byte(`{"properties":{"desired":{"n":1001}}}`), ""); err != nil {
		t.Fatalf("patch with 2 of 3 etcd members: %v", err)
	}
	// Two down: 503, saying why.
	c.Stop(1)
	_, err = owner[0].PatchTwin(ctx, "d", "m", []byte(`{"properties":{"desired":{"n":1002}}}`), "")
	var he *hubclient.Error
	if !errors.As(err, &he) || he.StatusCode != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "etcd is unavailable") {
		t.Fatalf("patch with 1 of 3 etcd members: %v, want 503 saying etcd is unavailable", err)
	}

	// Quorum back: the acknowledged state is there, and writes go on.
	c.Restart(1)
	c.Restart(2)
	c.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err = owner[0].PatchTwin(ctx, "d", "m", []byte(`{"properties":{"desired":{"n":1003}}}`), "")
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("patch after the quorum came back: %v", err)
	}
	if s, err = dev0.Sync(ctx, "d", s.Cursor, 0); err != nil || desiredN(t, s) != 1003 {
		t.Fatalf("sync after the quorum came back: n=%d, %v", desiredN(t, s), err)
	}
}
