package moduleclient

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// MaxMessageSize is the largest message (body and properties) the broker
// takes: IoT Hub's 256 KiB.
const MaxMessageSize = 256 * 1024

// Message is a message a module sends on an output or gets on an input.
// Properties are the application properties, which routes' WHERE
// conditions look at.
type Message struct {
	Body            []byte
	Properties      map[string]string
	MessageID       string // $.mid
	CorrelationID   string // $.cid
	UserID          string // $.uid
	ContentType     string // $.ct, such as application/json
	ContentEncoding string // $.ce, such as utf-8

	// Set on a message received on an input.
	Input              string // the input's name
	To                 string // $.to, the input's address
	ConnectionDeviceID string // $.cdid: the sender's device
	ConnectionModuleID string // $.cmid: the sender module
	OutputName         string // $.on: the output it was sent on
}

var systemKeys = map[string]func(*Message) *string{
	"$.mid": func(m *Message) *string { return &m.MessageID }, "$.cid": func(m *Message) *string { return &m.CorrelationID },
	"$.uid": func(m *Message) *string { return &m.UserID }, "$.ct": func(m *Message) *string { return &m.ContentType },
	"$.ce": func(m *Message) *string { return &m.ContentEncoding }, "$.to": func(m *Message) *string { return &m.To },
	"$.cdid": func(m *Message) *string { return &m.ConnectionDeviceID }, "$.cmid": func(m *Message) *string { return &m.ConnectionModuleID },
	"$.on": func(m *Message) *string { return &m.OutputName },
}

// escape encodes as JavaScript's encodeURIComponent, as the Azure SDKs do.
func escape(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }

func (c *Client) eventsTopic(output string, msg Message) string {
	var b strings.Builder
	b.WriteString(c.cfg.path() + "/messages/events/")
	var fields []string
	if output != "" {
		fields = append(fields, "%24.on="+escape(output))
	}
	for _, k := range []string{"$.mid", "$.cid", "$.uid", "$.ct", "$.ce"} {
		if v := *systemKeys[k](&msg); v != "" {
			fields = append(fields, escape(k)+"="+escape(v))
		}
	}
	keys := make([]string, 0, len(msg.Properties))
	for k := range msg.Properties {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fields = append(fields, escape(k)+"="+escape(msg.Properties[k]))
	}
	b.WriteString(strings.Join(fields, "&"))
	return b.String()
}

// SendOutput sends msg on the module's output (IoT Edge's
// SendEventAsync(output, message)); an empty output sends plain telemetry.
// It returns once the daemon has the message durably (its PUBACK), sending
// it again over the next connection when one goes first: at least once.
func (c *Client) SendOutput(ctx context.Context, output string, msg Message) error {
	if output != "" && c.id == asDevice {
		return fmt.Errorf("moduleclient: send output %s: a device has no outputs: send telemetry with no output name", output)
	}
	for k := range msg.Properties {
		if k == "" || strings.HasPrefix(k, "$.") {
			return fmt.Errorf("moduleclient: send output: property name %q is empty or reserved ($. names are system properties)", k)
		}
	}
	topic := c.eventsTopic(output, msg)
	if n := len(topic) + len(msg.Body); n > MaxMessageSize {
		return fmt.Errorf("moduleclient: send output %s: the message is %d bytes with its properties; at most %d are allowed", output, n, MaxMessageSize)
	}
	for {
		c.mu.Lock()
		cl, up, gone, closed := c.conn, c.up, c.gone, c.closed
		c.mu.Unlock()
		if closed {
			return ErrClosed
		}
		if cl == nil {
			select {
			case <-up:
				continue
			case <-c.done:
				return ErrClosed
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		t := cl.Publish(topic, 1, false, msg.Body)
		select {
		case <-t.Done():
			if t.Error() == nil {
				return nil
			}
		case <-gone: // no PUBACK on this connection: send it again on the next
		case <-c.done:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case <-gone:
		case <-c.done:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// OnInput calls h with each message routed to the module's input (every
// input when input is ""), in order, one at a time; the daemon has the
// message acknowledged when h returns, and sends it again after a
// reconnect if it was not. It subscribes to the module's inputs at once
// and after each reconnect.
func (c *Client) OnInput(input string, h func(Message)) error {
	if c.id == asDevice {
		return errors.New("moduleclient: a device has no inputs: routes deliver messages to modules' inputs only")
	}
	c.mu.Lock()
	first := len(c.inputs) == 0
	c.inputs = append(c.inputs, inputHandler{input: input, h: h})
	cl := c.conn
	c.mu.Unlock()
	if first && cl != nil {
		ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
		defer cancel()
		if err := c.subscribeInputs(ctx, cl); err != nil {
			return fmt.Errorf("moduleclient: subscribe to the inputs: %w", err)
		}
	}
	return nil
}

type inputHandler struct {
	input string
	h     func(Message)
}

func (c *Client) inputFilter() string {
	return c.cfg.path() + "/inputs/#"
}

// subscribeInputs subscribes cl to the inputs when a handler wants them.
func (c *Client) subscribeInputs(ctx context.Context, cl mqtt.Client) error {
	c.mu.Lock()
	n := len(c.inputs)
	c.mu.Unlock()
	if n == 0 {
		return nil
	}
	t := cl.Subscribe(c.inputFilter(), 1, c.onInput)
	if err := wait(ctx, t); err != nil {
		return err
	}
	if st, ok := t.(*mqtt.SubscribeToken); ok {
		if code := st.Result()[c.inputFilter()]; code == 0x80 {
			return errors.New("the broker refused the subscription to the inputs (SUBACK 0x80): does the daemon route messages?")
		}
	}
	return nil
}

func (c *Client) onInput(_ mqtt.Client, m mqtt.Message) {
	msg, err := parseInput(c.inputFilter(), m.Topic(), m.Payload())
	if err != nil {
		c.log.Warn("ignored a message on the inputs topic", "topic", m.Topic(), "err", err)
		return
	}
	c.mu.Lock()
	hs := append([]inputHandler(nil), c.inputs...)
	c.mu.Unlock()
	for _, ih := range hs {
		if ih.input == "" || ih.input == msg.Input {
			ih.h(msg)
		}
	}
}

// parseInput reads devices/{d}/modules/{m}/inputs/{input}/{property bag}.
func parseInput(filter, topic string, body []byte) (Message, error) {
	rest, ok := strings.CutPrefix(topic, strings.TrimSuffix(filter, "#"))
	if !ok {
		return Message{}, errors.New("not an input topic of this module")
	}
	input, bag, _ := strings.Cut(rest, "/")
	msg := Message{Input: input, Body: body}
	for field := range strings.SplitSeq(bag, "&") {
		if field == "" {
			continue
		}
		k, v, _ := strings.Cut(field, "=")
		name, err1 := url.PathUnescape(k)
		value, err2 := url.PathUnescape(v)
		if err1 != nil || err2 != nil {
			return Message{}, fmt.Errorf("property %q is not valid url-encoding", field)
		}
		if f, ok := systemKeys[name]; ok {
			*f(&msg) = value
			continue
		}
		if msg.Properties == nil {
			msg.Properties = map[string]string{}
		}
		msg.Properties[name] = value
	}
	return msg, nil
}
