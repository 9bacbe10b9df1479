package moduleclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Direct method topics: calls come on $iothub/methods/POST/{method}/?$rid=…,
// answers go to $iothub/methods/res/{status}/?$rid=….
const (
	topicMethods     = "$iothub/methods/POST/#"
	topicMethodPOST  = "$iothub/methods/POST/"
	topicMethodRes   = "$iothub/methods/res/"
	maxMethodPayload = 128 * 1024
)

// MethodHandler answers a direct method: it gets the call's JSON payload
// ("null" when the caller sent none) and returns the status and the
// payload of the answer (any value encoding/json takes; nil is null). ctx
// ends when the client is closed.
type MethodHandler func(ctx context.Context, payload json.RawMessage) (status int, result any)

// methods is what the client knows of its method handlers.
type methods struct {
	mu       sync.Mutex
	handlers map[string]MethodHandler
	ctx      context.Context
	cancel   context.CancelFunc
}

// OnMethod makes f answer the direct method name, as IoT Hub's SDKs'
// SetMethodHandlerAsync / onMethod do: the service calls it through the hub
// (outpost method invoke DEVICE/MODULE NAME, or IoT Hub's
// invokeDeviceMethod), the daemon passes the call to the module, and f's
// answer goes back to the caller, who waits at most the call's
// responseTimeoutInSeconds. Calls to a method without a handler are
// answered 501. The first OnMethod subscribes the client to methods (and
// every reconnection does again); its error is the broker's refusal, when a
// daemon too old to serve methods refuses it. f runs in a goroutine of its
// own for each call.
func (c *Client) OnMethod(name string, f MethodHandler) error {
	if name == "" || f == nil {
		return errors.New("moduleclient: OnMethod needs a method name and a handler")
	}
	c.methods.mu.Lock()
	first := c.methods.handlers == nil
	if first {
		c.methods.handlers = map[string]MethodHandler{}
		c.methods.ctx, c.methods.cancel = context.WithCancel(context.Background())
	}
	c.methods.handlers[name] = f
	c.methods.mu.Unlock()
	if !first {
		return nil
	}
	c.mu.Lock()
	cl := c.conn
	c.mu.Unlock()
	if cl == nil {
		return nil // the next connection subscribes
	}
	return c.subscribe(c.methods.ctx, cl, topicMethods, c.onMethodCall)
}

// wantsMethods reports whether a connection should subscribe to methods.
func (c *Client) wantsMethods() bool {
	c.methods.mu.Lock()
	defer c.methods.mu.Unlock()
	return c.methods.handlers != nil
}

// stopMethods ends the handlers' context (Close).
func (c *Client) stopMethods() {
	c.methods.mu.Lock()
	defer c.methods.mu.Unlock()
	if c.methods.cancel != nil {
		c.methods.cancel()
	}
}

// onMethodCall runs the handler of a call and publishes its answer.
func (c *Client) onMethodCall(cl mqtt.Client, m mqtt.Message) {
	name, bag, ok := strings.Cut(strings.TrimPrefix(m.Topic(), topicMethodPOST), "/?")
	q, err := url.ParseQuery(bag)
	rid := q.Get("$rid")
	if !ok || err != nil || rid == "" {
		c.log.Warn("ignored a method call on a topic without $rid", "topic", m.Topic())
		return
	}
	if n, err := url.PathUnescape(name); err == nil {
		name = n
	}
	payload := json.RawMessage(m.Payload())
	if len(payload) == 0 {
		payload = json.RawMessage("null")
	}
	c.methods.mu.Lock()
	f, ctx := c.methods.handlers[name], c.methods.ctx
	c.methods.mu.Unlock()
	go func() {
		status, result := 501, any(map[string]string{"message": fmt.Sprintf("module has no handler for method %q", name)})
		if f != nil {
			status, result = f(ctx, payload)
		}
		body, err := json.Marshal(result)
		if err != nil {
			status, body = 500, mustJSON(map[string]string{"message": fmt.Sprintf("the answer of method %q is not JSON: %v", name, err)})
		}
		if len(body) > maxMethodPayload {
			status, body = 500, mustJSON(map[string]string{"message": fmt.Sprintf("the answer of method %q is %d bytes, over the 128 KiB limit", name, len(body))})
		}
		t := cl.Publish(topicMethodRes+strconv.Itoa(status)+"/?$rid="+url.QueryEscape(rid), 0, false, body)
		if err := wait(ctx, t); err != nil {
			c.log.Warn("a method's answer was not sent", "method", name, "err", err)
		}
	}()
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
