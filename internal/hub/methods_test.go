package hub_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
)

func seconds(n int) *int { return &n }

// takeCalls long-polls as the device until the hub hands it method calls.
func takeCalls(t *testing.T, dc *hubclient.Client, id string) []hubapi.MethodCall {
	t.Helper()
	s, err := dc.Sync(ctx, id, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for len(s.Methods) == 0 {
		if s, err = dc.Sync(ctx, id, s.Cursor, hubapi.MaxWait); err != nil {
			t.Fatal(err)
		}
	}
	return s.Methods
}

type invoked struct {
	res *hubapi.MethodResult
	err error
}

func invoke(c *hubclient.Client, device, module string, req hubapi.MethodRequest) <-chan invoked {
	ch := make(chan invoked, 1)
	go func() {
		r, err := c.InvokeMethod(ctx, device, module, req)
		ch <- invoked{r, err}
	}()
	return ch
}

// TestMethodRoundTrip: a call to a module reaches the device in its long
// poll (not in a tool's twin sync), and the device's answer is the caller's
// {status, payload}; a second answer is refused.
func TestMethodRoundTrip(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	dc := device(t, h, "d", "a")
	owner := h.Client(t)

	// The owner's sync (outpost twin watch does one) is not the device's: it
	// never takes calls.
	watch, err := owner.Sync(ctx, "d", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	done := invoke(owner, "d", "a", hubapi.MethodRequest{MethodName: "reboot", Payload: json.RawMessage(`{"delay":3}`), ConnectTimeoutInSeconds: seconds(30)})
	calls := takeCalls(t, dc, "d")
	if again, err := owner.Sync(ctx, "d", watch.Cursor, 0); err != nil || len(again.Methods) != 0 {
		t.Fatalf("owner's sync: %+v %v", again, err)
	}
	if len(calls) != 1 || calls[0].ModuleID != "a" || calls[0].Method != "reboot" || string(calls[0].Payload) != `{"delay":3}` || calls[0].ResponseTimeoutMs <= 0 {
		t.Fatalf("calls: %+v", calls)
	}
	if err := dc.AnswerMethod(ctx, "d", calls[0].ID, hubapi.MethodResponse{Status: 200, Payload: json.RawMessage(`{"rebooted":true}`)}); err != nil {
		t.Fatal(err)
	}
	got := <-done
	if got.err != nil || got.res.Status != 200 || string(got.res.Payload) != `{"rebooted":true}` {
		t.Fatalf("result %+v, %v", got.res, got.err)
	}
	// The call has ended: a late answer is refused, naming why.
	err = dc.AnswerMethod(ctx, "d", calls[0].ID, hubapi.MethodResponse{Status: 200})
	var he *hubclient.Error
	if !errors.As(err, &he) || he.StatusCode != 404 || !strings.Contains(he.Message, "has ended") {
		t.Fatalf("late answer: %v", err)
	}

	// A device method (no module) and a payload-less call: payload null.
	done = invoke(owner, "d", "", hubapi.MethodRequest{MethodName: "ping", ConnectTimeoutInSeconds: seconds(30)})
	calls = takeCalls(t, dc, "d")
	if calls[0].ModuleID != "" || string(calls[0].Payload) != "null" {
		t.Fatalf("device call: %+v", calls[0])
	}
	if err := dc.AnswerMethod(ctx, "d", calls[0].ID, hubapi.MethodResponse{Status: 404, Payload: json.RawMessage(`"no such method"`)}); err != nil {
		t.Fatal(err)
	}
	if got := <-done; got.err != nil || got.res.Status != 404 || string(got.res.Payload) != `"no such method"` {
		t.Fatalf("device result %+v, %v", got.res, got.err)
	}
}

// TestMethodNotOnline: a device that never connected is 404 DeviceNotOnline
// (404103) at once with connectTimeoutInSeconds 0 and after it otherwise; a
// device that says the module is not there gives the same.
func TestMethodNotOnline(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	dc := device(t, h, "d", "a")
	status, body := h.Request(t, "POST", "/twins/d/modules/a/methods?api-version=2021-04-12", ownerAuth(t, h), "", []byte(`{"methodName":"reboot"}`))
	if status != 404 || !strings.Contains(body, `"errorCode":404103`) || !strings.Contains(body, "ErrorCode:DeviceNotOnline;") {
		t.Fatalf("offline: %d %s", status, body)
	}
	owner := h.Client(t)
	_, err := owner.InvokeMethod(ctx, "d", "a", hubapi.MethodRequest{MethodName: "reboot", ConnectTimeoutInSeconds: seconds(1)})
	var he *hubclient.Error
	if !errors.As(err, &he) || he.StatusCode != 404 || he.Code != "DeviceNotOnline" {
		t.Fatalf("offline after connect timeout: %v", err)
	}

	done := invoke(owner, "d", "a", hubapi.MethodRequest{MethodName: "reboot", ConnectTimeoutInSeconds: seconds(30)})
	calls := takeCalls(t, dc, "d")
	if err := dc.AnswerMethod(ctx, "d", calls[0].ID, hubapi.MethodResponse{NotOnline: true, Reason: "module a is not subscribed"}); err != nil {
		t.Fatal(err)
	}
	got := <-done
	if !errors.As(got.err, &he) || he.StatusCode != 404 || he.Code != "DeviceNotOnline" || !strings.Contains(he.Message, "module a is not subscribed") {
		t.Fatalf("module not there: %v", got.err)
	}
}

// TestMethodGatewayTimeout: a device that takes the call and never answers
// gives 504 GatewayTimeout (504101).
func TestMethodGatewayTimeout(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	dc := device(t, h, "d", "a")
	if _, err := dc.Sync(ctx, "d", "", 0); err != nil { // connected: the call waits a moment for its next poll
		t.Fatal(err)
	}
	// The device says the module did not answer in time.
	done := invoke(h.Client(t), "d", "a", hubapi.MethodRequest{MethodName: "slow", ResponseTimeoutInSeconds: seconds(300)})
	calls := takeCalls(t, dc, "d")
	if err := dc.AnswerMethod(ctx, "d", calls[0].ID, hubapi.MethodResponse{TimedOut: true}); err != nil {
		t.Fatal(err)
	}
	got := <-done
	var he *hubclient.Error
	if !errors.As(got.err, &he) || he.StatusCode != 504 || he.Code != "GatewayTimeout" {
		t.Fatalf("module timed out: %v", got.err)
	}

	// The device takes the call and says nothing: the hub gives up itself.
	done = invoke(h.Client(t), "d", "a", hubapi.MethodRequest{MethodName: "slow", ResponseTimeoutInSeconds: seconds(5)})
	calls = takeCalls(t, dc, "d")
	got = <-done
	if !errors.As(got.err, &he) || he.StatusCode != 504 || he.Code != "GatewayTimeout" || !strings.Contains(he.Message, "responseTimeoutInSeconds") {
		t.Fatalf("no answer: %v", got.err)
	}
	if err := dc.AnswerMethod(ctx, "d", calls[0].ID, hubapi.MethodResponse{Status: 200}); err == nil {
		t.Fatal("an answer after the timeout was taken")
	}
}

// TestMethodBadInput: what is wrong is named, before any device is asked.
func TestMethodBadInput(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	dc := device(t, h, "d", "a")
	auth := ownerAuth(t, h)
	big := `{"methodName":"m","payload":"` + strings.Repeat("x", hubapi.MaxMethodPayload) + `"}`
	for _, c := range []struct {
		path, body string
		status     int
		want       string
	}{
		{"/twins/d/modules/a/methods", `{}`, 400, "methodName is missing"},
		{"/twins/d/modules/a/methods", `{"methodName":"a/b"}`, 400, `character '/' at position 1`},
		{"/twins/d/modules/a/methods", `{"methodName":"` + strings.Repeat("m", 101) + `"}`, 400, "at most 100"},
		{"/twins/d/modules/a/methods", `{"methodName":"m","responseTimeoutInSeconds":1}`, 400, "responseTimeoutInSeconds: 1 is out of range"},
		{"/twins/d/modules/a/methods", `{"methodName":"m","connectTimeoutInSeconds":-1}`, 400, "connectTimeoutInSeconds: -1 is out of range"},
		{"/twins/d/modules/a/methods", `{"methodName":"m","payload":{"a":1,"a":2}}`, 400, "payload"},
		{"/twins/d/modules/a/methods", `{"methodName":`, 400, "malformed JSON"},
		{"/twins/d/modules/a/methods", big, 413, "at most 131072"},
		{"/twins/nosuch/methods", `{"methodName":"m"}`, 404, "DeviceNotFound"},
		{"/twins/d/modules/nosuch/methods", `{"methodName":"m"}`, 404, "ModuleNotFound"},
	} {
		status, body := h.Request(t, "POST", c.path, auth, "", []byte(c.body))
		if status != c.status || !strings.Contains(body, c.want) {
			t.Errorf("POST %s %.60s: %d %s, want %d with %q", c.path, c.body, status, body, c.status, c.want)
		}
	}
	// A device may not call methods; a device's answer needs a status.
	if _, err := dc.InvokeMethod(ctx, "d", "a", hubapi.MethodRequest{MethodName: "m"}); err == nil {
		t.Fatal("a device invoked a method")
	}
	var he *hubclient.Error
	if err := dc.AnswerMethod(ctx, "d", "x", hubapi.MethodResponse{Status: 7}); !errors.As(err, &he) || he.StatusCode != http.StatusBadRequest {
		t.Fatalf("answer without a status: %v", err)
	}
}
