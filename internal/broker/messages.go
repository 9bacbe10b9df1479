package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/msgqueue"
	"github.com/outpost-edge/outpost/internal/route"
)

// Module messages: a module publishes on
// devices/{d}/modules/{m}/messages/events/{property bag} (the output in
// $.on); the broker runs the $edgeHub routes over it and appends it once to
// the message queue (Config.Messages) with every destination a route gave:
// UpstreamDest for the hub, InputDest(module, input) for a module's input.
// The PUBACK goes out once the append is durable; a full queue gets none
// (the module's SDK sends again) and a warning. A module subscribed to
// devices/{d}/modules/{m}/inputs/# gets what was routed to its inputs, at
// QoS 1, in order for each input, each message until the module acknowledges
// it (again after a reconnect when it did not) or it expires.

// Message limits and names.
const (
	// MaxMessageSize is IoT Hub's limit on a device-to-cloud message:
	// body and properties.
	MaxMessageSize = 256 * 1024
	// UpstreamDest is the queue destination of messages for the hub.
	UpstreamDest = "upstream"
	// inputDestPrefix starts the queue destinations of module inputs.
	inputDestPrefix = "input/"
	// HubModuleID is the twin with the routes.
	HubModuleID = "$edgeHub"
	// DefaultTimeToLive is IoT Edge's storeAndForwardConfiguration default.
	DefaultTimeToLive = 7200 * time.Second
	// deliverWindow is how many input messages may await a module's PUBACK.
	deliverWindow = 128
	// deliverPoll is how often an idle deliverer looks at its module's
	// subscriptions (they change without a queue commit).
	deliverPoll = 250 * time.Millisecond
)

// InputDest is the queue destination of a module's input.
func InputDest(module, input string) string { return inputDestPrefix + module + "/" + input }

// messaging is the broker's message state.
type messaging struct {
	routing   atomic.Pointer[routing]
	fullWarns atomic.Int64
}

// routing is the routes in force, from $edgeHub's desired properties.
type routing struct {
	routes  []*route.Route
	ttl     time.Duration
	version int64
	err     error
}

// loadRoutes reads the routes from the $edgeHub twin. A twin whose routes
// do not parse routes nothing (the daemon reports the error in $edgeHub's
// lastDesiredStatus) rather than something else than asked.
func (b *Broker) loadRoutes() {
	if b.cfg.Messages == nil {
		return
	}
	tw, err := b.cfg.Twins.Twin(HubModuleID)
	if err != nil {
		b.msg.routing.Store(&routing{ttl: DefaultTimeToLive, err: err})
		return
	}
	rt, err := parseHubDesired(tw.DesiredJSON())
	rt.version = tw.DesiredVersion()
	if err != nil {
		b.log.Warn("broker: the $edgeHub routes do not parse: no message is routed until they are fixed", "err", err)
	} else {
		b.log.Info("broker: routes loaded", "routes", len(rt.routes), "desired_version", rt.version)
	}
	b.msg.routing.Store(rt)
}

// parseHubDesired reads the routes and store-and-forward time to live of
// $edgeHub's desired properties.
func parseHubDesired(desired []byte) (*routing, error) {
	var d struct {
		Routes json.RawMessage `json:"routes"`
		SAF    struct {
			TTL *int64 `json:"timeToLiveSecs"`
		} `json:"storeAndForwardConfiguration"`
	}
	rt := &routing{ttl: DefaultTimeToLive}
	if err := json.Unmarshal(desired, &d); err != nil {
		rt.err = fmt.Errorf("$edgeHub desired properties: %w", err)
		return rt, rt.err
	}
	if d.SAF.TTL != nil && *d.SAF.TTL > 0 {
		rt.ttl = time.Duration(*d.SAF.TTL) * time.Second
	}
	routes, err := route.ParseJSON(d.Routes)
	if err != nil {
		rt.err = err
		return rt, err
	}
	rt.routes = routes
	return rt, nil
}

// eventsTopic parses devices/{d}/modules/{m}/messages/events/{bag}.
func (b *Broker) eventsTopic(s *session, topic string) (bag string, err error) {
	if id, ok := leafOf(s); ok {
		return leafEventsTopic(id, topic)
	}
	own := "devices/" + b.cfg.DeviceID + "/modules/" + s.m.id + "/"
	rest, ok := strings.CutPrefix(topic, own)
	if !ok {
		if strings.Contains(topic, "/inputs/") {
			return "", fmt.Errorf("topic %q is a module's input: a module may not publish to inputs; send on an output (%smessages/events/$.on={output}) and let a route deliver it", topic, own)
		}
		return "", fmt.Errorf("topic %q is not this module's: a module publishes on %smessages/events/{property bag}", topic, own)
	}
	bag, ok = strings.CutPrefix(rest, "messages/events/")
	if !ok {
		if strings.HasPrefix(rest, "inputs/") {
			return "", fmt.Errorf("topic %q is an input: a module may not publish to inputs, its own or another's; send on an output (%smessages/events/$.on={output})", topic, own)
		}
		return "", fmt.Errorf("topic %q is not one a module may publish to: telemetry and outputs go on %smessages/events/{property bag}", topic, own)
	}
	return strings.TrimSuffix(bag, "/"), nil
}

// onMessage takes a module's message: checks it, routes it, appends it to
// the queue and acknowledges it once durable. It reports false when the
// connection was closed for it.
func (b *Broker) onMessage(s *session, cl *mqtt.Client, pk packets.Packet) bool {
	refuse := func(reason string) bool {
		b.log.Warn("broker: closing a "+s.m.kind()+"'s connection: refused message", s.m.kind(), s.m.id, "remote", s.remote, "topic", truncate(pk.TopicName, 200), "reason", reason)
		cl.Stop(fmt.Errorf("refused message: %s", reason))
		return false
	}
	bag, err := b.eventsTopic(s, pk.TopicName)
	if err != nil {
		return refuse(err.Error())
	}
	if size := len(pk.Payload) + len(bag); size > MaxMessageSize {
		return refuse(fmt.Sprintf("the message is %d bytes (body and properties); IoT Hub's limit is %d: split it or send less", size, MaxMessageSize))
	}
	props, err := parsePropertyBag(bag)
	if err != nil {
		return refuse(fmt.Sprintf("malformed property bag: %v", err))
	}
	now := b.now()
	msg := hubapi.Message{EnqueuedTime: now.UTC(), Body: pk.Payload}
	msg.DeviceID, msg.ModuleID = b.sender(s)
	for k, v := range props {
		if strings.HasPrefix(k, "$.") {
			if msg.SystemProperties == nil {
				msg.SystemProperties = map[string]string{}
			}
			msg.SystemProperties[k] = v
		} else {
			if msg.Properties == nil {
				msg.Properties = map[string]string{}
			}
			msg.Properties[k] = v
		}
	}
	msg.OutputName = msg.SystemProperties["$.on"]
	dests := b.route(&msg, now)
	if len(dests) == 0 {
		b.log.Debug("broker: no route takes the message: dropped", "module", s.m.id, "output", msg.OutputName)
		if pk.FixedHeader.Qos > 0 {
			_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
		}
		return true
	}
	if s.acks == nil { // only this client's reader goroutine comes here
		s.acks = &pubacks{cl: cl}
	}
	acks := s.acks
	ack := func() {
		if pk.FixedHeader.Qos > 0 {
			acks.add(pk.PacketID)
		}
	}
	data, _ := json.Marshal(msg)
	// The decoded message stays beside the queue's copy for this process's
	// deliveries: only a message read back after a restart is decoded.
	b.cfg.Messages.Append(msgqueue.Record{Dests: dests, Data: data, Value: &msg, Flush: acks, Source: MessageSource(msg.DeviceID, msg.ModuleID)}, func(_ uint64, err error) {
		switch {
		case err == nil:
			ack()
		case errors.Is(err, msgqueue.ErrFull):
			if n := b.msg.fullWarns.Add(1); n == 1 || n%1000 == 0 {
				b.log.Warn("broker: the message queue is full: PUBACK withheld (the module sends again); is the hub unreachable, or a module not reading its input?", "module", s.m.id, "refused", n)
			}
		default:
			b.log.Error("broker: could not make a message durable: PUBACK withheld", "module", s.m.id, "err", err)
		}
	})
	return true
}

// MessageSource is a queued message's msgqueue source: "device/module" for
// a module's, "device" for a leaf device's.
func MessageSource(device, module string) string {
	if module == "" {
		return device
	}
	return device + "/" + module
}

// MessageSourceOf is msgqueue's Options.SourceOf for the messages the
// broker queues (hubapi.Message JSON).
func MessageSourceOf(data []byte) string {
	var m struct {
		DeviceID string `json:"deviceId"`
		ModuleID string `json:"moduleId"`
	}
	if json.Unmarshal(data, &m) != nil {
		return ""
	}
	return MessageSource(m.DeviceID, m.ModuleID)
}

// pubacks gathers the PUBACKs of a group commit for one module, sent
// together in one write when the group's callbacks are over (Flush).
type pubacks struct {
	cl  *mqtt.Client
	mu  sync.Mutex
	ids []uint16
}

func (a *pubacks) add(id uint16) {
	a.mu.Lock()
	a.ids = append(a.ids, id)
	a.mu.Unlock()
}

// Flush sends the PUBACKs gathered.
func (a *pubacks) Flush() {
	a.mu.Lock()
	ids := a.ids
	a.ids = nil
	a.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	pks := make([]packets.Packet, len(ids))
	for i, id := range ids {
		pks[i] = packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id, ProtocolVersion: a.cl.Properties.ProtocolVersion}
	}
	_ = writePackets(a.cl, pks) // a connection that ended gets none: the module sends again
}

// route returns the queue destinations the routes give msg, each once.
func (b *Broker) route(msg *hubapi.Message, now time.Time) []msgqueue.Dest {
	rt := b.msg.routing.Load()
	if rt == nil || len(rt.routes) == 0 {
		return nil
	}
	sys := map[string]string{"$connectionDeviceId": msg.DeviceID}
	if msg.ModuleID != "" { // a leaf device's message has none: NOT IS_DEFINED($connectionModuleId)
		sys["$connectionModuleId"] = msg.ModuleID
	}
	for wire, name := range systemQueryNames {
		if v, ok := msg.SystemProperties[wire]; ok {
			sys[name] = v
		}
	}
	rm := &route.Message{Module: msg.ModuleID, Output: msg.OutputName, Properties: msg.Properties, System: sys}
	var dests []msgqueue.Dest
	seen := map[string]bool{}
	for _, r := range rt.routes {
		if !r.Matches(rm) {
			continue
		}
		name := UpstreamDest
		if !r.Sink.Upstream {
			name = InputDest(r.Sink.Module, r.Sink.Input)
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		ttl := rt.ttl
		if r.TTLSecs > 0 {
			ttl = time.Duration(r.TTLSecs) * time.Second
		}
		// A module's input reads the message decoded at its append.
		dests = append(dests, msgqueue.Dest{Name: name, Expires: now.Add(ttl), ReadsValue: !r.Sink.Upstream})
	}
	return dests
}

// systemQueryNames maps the MQTT names of system properties to the
// routing query's.
var systemQueryNames = map[string]string{
	"$.mid": "$messageId", "$.cid": "$correlationId", "$.uid": "$userId",
	"$.ct": "$contentType", "$.ce": "$contentEncoding", "$.on": "$outputName",
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// inputFilter is the filter a module subscribes to for its inputs.
func (b *Broker) inputFilter(moduleID string) string {
	return "devices/" + b.cfg.DeviceID + "/modules/" + moduleID + "/inputs/#"
}

// deliverer sends a session's module what was routed to its inputs.
type deliverer struct {
	b *Broker
	s *session

	mu       sync.Mutex
	inflight map[uint16]inflightRef
	sent     map[string][]sentRef // per destination, in send order, not yet acknowledged in the queue
	last     map[string]uint64    // per destination, the last seq sent in this session
	wake     chan struct{}
	batch    []packets.Packet // send's, reused
}

type inflightRef struct {
	dest string
	seq  uint64
}

type sentRef struct {
	seq  uint64
	done bool
}

// startDelivery runs the session's deliverer until the session ends.
func (b *Broker) startDelivery(s *session) {
	if b.cfg.Messages == nil {
		return
	}
	d := &deliverer{b: b, s: s, inflight: map[uint16]inflightRef{}, sent: map[string][]sentRef{}, last: map[string]uint64{}, wake: make(chan struct{}, 1)}
	b.mu.Lock()
	b.deliverers[s.cl] = d
	b.mu.Unlock()
	b.wg.Go(d.run)
}

func (d *deliverer) run() {
	defer d.end()
	t := time.NewTicker(deliverPoll)
	defer t.Stop()
	log := d.b.cfg.Messages
	for {
		changed := log.Changed()
		if d.subscribed() {
			d.send()
		}
		select {
		case <-d.s.done:
			return
		case <-changed:
		case <-d.wake:
		case <-t.C:
		}
	}
}

func (d *deliverer) subscribed() bool {
	_, ok := d.s.cl.State.Subscriptions.Get(d.b.inputFilter(d.s.m.id))
	return ok
}

// send publishes what waits, up to the window, in one write: one TLS
// record (or a few, for many messages) rather than one a message.
func (d *deliverer) send() {
	log := d.b.cfg.Messages
	prefix := inputDestPrefix + d.s.m.id + "/"
	d.batch = d.batch[:0]
dests:
	for _, dest := range log.Dests(prefix) {
		d.mu.Lock()
		room := deliverWindow - len(d.inflight)
		after := d.last[dest] // not from sent: a prefix acknowledged is sent still
		d.mu.Unlock()
		if room <= 0 {
			break
		}
		input := strings.TrimPrefix(dest, prefix)
		for _, e := range log.Pending(dest, after, room) {
			if !d.add(dest, input, e) {
				break dests // no packet ID free: what is in the batch goes
			}
		}
	}
	if len(d.batch) == 0 {
		return
	}
	if err := writePackets(d.s.cl, d.batch); err != nil {
		d.s.cl.Stop(fmt.Errorf("write to the module: %w", err))
	}
}

// add makes e's PUBLISH, in mochi's inflight (for its packet ID and
// PUBACK) and in send's batch.
func (d *deliverer) add(dest, input string, e msgqueue.Entry) bool {
	msg, _ := e.Value.(*hubapi.Message)
	if msg == nil { // read back after a restart
		msg = new(hubapi.Message)
		if err := json.Unmarshal(e.Data, msg); err != nil {
			d.b.log.Error("broker: a queued message does not decode: skipped", "dest", dest, "seq", e.Seq, "err", err)
			d.b.cfg.Messages.Ack(dest, e.Seq)
			return true
		}
	}
	cl := d.s.cl
	id, err := cl.NextPacketID()
	if err != nil {
		return false
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   inputTopic(d.b.cfg.DeviceID, d.s.m.id, input, msg),
		Payload:     msg.Body,
		PacketID:    uint16(id),
		// mochi drops inflight packets older than its maximum message
		// expiry, by Created: without it one second later, and the
		// module's PUBACK would then be ignored.
		Created:         time.Now().Unix(),
		ProtocolVersion: cl.Properties.ProtocolVersion,
	}
	d.mu.Lock()
	cl.State.Inflight.Set(pk)
	d.inflight[pk.PacketID] = inflightRef{dest: dest, seq: e.Seq}
	d.sent[dest] = append(d.sent[dest], sentRef{seq: e.Seq})
	d.last[dest] = e.Seq
	d.mu.Unlock()
	d.batch = append(d.batch, pk)
	return true
}

// writePackets encodes pks (PUBLISH and PUBACK) and writes them to cl's
// connection at once, under the client's lock as mochi's WritePacket does
// (nothing else the broker sends goes through mochi's outbound queue, so no
// write of mochi's is buffered ahead of these).
func writePackets(cl *mqtt.Client, pks []packets.Packet) error {
	var buf bytes.Buffer
	for i := range pks {
		var err error
		switch pks[i].FixedHeader.Type {
		case packets.Publish:
			err = pks[i].PublishEncode(&buf)
		case packets.Puback:
			err = pks[i].PubackEncode(&buf)
		default:
			err = fmt.Errorf("writePackets: packet type %d", pks[i].FixedHeader.Type)
		}
		if err != nil {
			return err
		}
	}
	cl.Lock()
	defer cl.Unlock()
	if cl.Closed() || cl.Net.Conn == nil {
		return mqtt.ErrConnectionClosed
	}
	_, err := cl.Net.Conn.Write(buf.Bytes())
	return err
}

// inputTopic is where a message routed to a module's input goes:
// devices/{d}/modules/{m}/inputs/{input}/{bag}, with the message's system
// and application properties, $.to the input's address and $.cdid, $.cmid
// the sender, as IoT Edge's hub sends them.
func inputTopic(deviceID, moduleID, input string, msg *hubapi.Message) string {
	var b strings.Builder
	b.WriteString("devices/" + deviceID + "/modules/" + moduleID + "/inputs/" + input + "/")
	sys := map[string]string{}
	for k, v := range msg.SystemProperties {
		sys[k] = v
	}
	sys["$.to"] = "/devices/" + deviceID + "/modules/" + moduleID + "/inputs/" + input
	sys["$.cdid"] = msg.DeviceID
	if msg.ModuleID != "" {
		sys["$.cmid"] = msg.ModuleID
	}
	first := true
	add := func(m map[string]string) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !first {
				b.WriteByte('&')
			}
			first = false
			b.WriteString(uriComponent(k) + "=" + uriComponent(m[k]))
		}
	}
	add(sys)
	add(msg.Properties)
	return b.String()
}

// complete takes a module's PUBACK of an input message.
func (d *deliverer) complete(id uint16) {
	d.mu.Lock()
	ref, ok := d.inflight[id]
	if !ok {
		d.mu.Unlock()
		return
	}
	delete(d.inflight, id)
	sent := d.sent[ref.dest]
	for i := range sent {
		if sent[i].seq == ref.seq {
			sent[i].done = true
			break
		}
	}
	n := 0
	for n < len(sent) && sent[n].done {
		n++
	}
	var ackTo uint64
	if n > 0 {
		ackTo = sent[n-1].seq
		d.sent[ref.dest] = sent[n:]
	}
	d.mu.Unlock()
	if ackTo > 0 {
		d.b.cfg.Messages.Ack(ref.dest, ackTo)
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// end forgets the session's unacknowledged sends (the next session sends
// them again) and takes them out of mochi's inflight, so that mochi does
// not resend them too.
func (d *deliverer) end() {
	d.mu.Lock()
	for id := range d.inflight {
		d.s.cl.State.Inflight.Delete(id)
	}
	d.inflight = nil
	d.mu.Unlock()
	d.b.mu.Lock()
	if d.b.deliverers[d.s.cl] == d {
		delete(d.b.deliverers, d.s.cl)
	}
	d.b.mu.Unlock()
}

// qosComplete hands a PUBACK to the client's deliverer.
func (b *Broker) qosComplete(cl *mqtt.Client, id uint16) {
	b.mu.Lock()
	d := b.deliverers[cl]
	b.mu.Unlock()
	if d != nil {
		d.complete(id)
	}
}

// MessageStatus is the message queue as the daemon's status shows it.
type MessageStatus struct {
	Upstream msgqueue.Stats `json:"upstream"`
	Inputs   msgqueue.Stats `json:"inputs"`
	// RoutesError is why the routes in force route nothing, "" when they parse.
	RoutesError string `json:"routesError,omitempty"`
}

// Messages returns the message queue's state.
func (b *Broker) Messages() MessageStatus {
	if b.cfg.Messages == nil {
		return MessageStatus{}
	}
	st := MessageStatus{Upstream: b.cfg.Messages.Stats(UpstreamDest), Inputs: b.cfg.Messages.Stats(inputDestPrefix)}
	if rt := b.msg.routing.Load(); rt != nil && rt.err != nil {
		st.RoutesError = rt.err.Error()
	}
	return st
}

// uriComponent escapes s as JavaScript's encodeURIComponent does (a space
// is %20, not +), which is how the Azure SDKs decode property bags.
func uriComponent(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }
