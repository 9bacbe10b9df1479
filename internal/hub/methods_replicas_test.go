package hub_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/store/etcdstore/etcdtest"
)

// TestMethodsAcrossReplicas: a direct method call made through replica 0
// reaches the device long-polling replica 1, and the device's answer
// through replica 1 reaches the caller; a call to a device that long-polls
// no replica fails with 404 DeviceNotOnline after its connect timeout.
func TestMethodsAcrossReplicas(t *testing.T) {
	c := etcdtest.Start(t, 1)
	hs := startReplicas(t, c, 2)
	owner := via(t, hs[0], hs[0].ConnectionString)
	d, err := owner.CreateDevice(ctx, hubapi.Device{DeviceID: "d"})
	if err != nil {
		t.Fatal(err)
	}
	dev := via(t, hs[1], hs[1].DeviceConnectionString("d", "", d.Authentication.SymmetricKey.PrimaryKey))
	s, err := dev.Sync(ctx, "d", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	answered := make(chan error, 1)
	go func() { // the device: long polls replica 1 until a call comes, answers it
		cursor := s.Cursor
		for {
			s, err := dev.Sync(ctx, "d", cursor, 20*time.Second)
			if err != nil {
				answered <- err
				return
			}
			cursor = s.Cursor
			if len(s.Methods) == 0 {
				continue
			}
			m := s.Methods[0]
			if m.Method != "reboot" || string(m.Payload) != `{"delay":1}` {
				answered <- errors.New("the device got " + m.Method + " " + string(m.Payload))
				return
			}
			answered <- dev.AnswerMethod(ctx, "d", m.ID, hubapi.MethodResponse{Status: 200, Payload: json.RawMessage(`{"ok":true}`)})
			return
		}
	}()
	ten := 10
	res, err := owner.InvokeMethod(ctx, "d", "", hubapi.MethodRequest{MethodName: "reboot", Payload: json.RawMessage(`{"delay":1}`),
		ConnectTimeoutInSeconds: &ten, ResponseTimeoutInSeconds: &ten})
	if err != nil {
		t.Fatalf("method through replica 0 to the device on replica 1: %v", err)
	}
	if res.Status != 200 || string(res.Payload) != `{"ok":true}` {
		t.Errorf("result %d %s, want 200 {\"ok\":true}", res.Status, res.Payload)
	}
	if err := <-answered; err != nil {
		t.Fatalf("the device: %v", err)
	}

	// No device long-polls: 404 after the connect timeout, and no call left
	// behind for a later sync.
	one, five := 1, 5
	_, err = owner.InvokeMethod(ctx, "d", "", hubapi.MethodRequest{MethodName: "late", ConnectTimeoutInSeconds: &one, ResponseTimeoutInSeconds: &five})
	var he *hubclient.Error
	if !errors.As(err, &he) || he.StatusCode != http.StatusNotFound {
		t.Fatalf("method to a device that is not there: %v, want 404", err)
	}
	if s, err := dev.Sync(ctx, "d", "", 0); err != nil || len(s.Methods) != 0 {
		t.Errorf("a later sync got %d calls (%v), want none: the withdrawn call is gone", len(s.Methods), err)
	}
}
