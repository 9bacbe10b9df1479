package broker

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// IoT Hub's twin topics, as a module sees them.
const (
	twinPrefix       = "$iothub/twin/"
	topicGet         = "$iothub/twin/GET/"
	topicPatch       = "$iothub/twin/PATCH/properties/reported/"
	topicResponse    = "$iothub/twin/res/"
	topicDesired     = "$iothub/twin/PATCH/properties/desired/"
	filterResponses  = "$iothub/twin/res/#"
	filterDesired    = "$iothub/twin/PATCH/properties/desired/#"
	maxPropertyBag   = 4096 // bytes of "?…" a request topic may carry
	maxRequestIDSize = 128
)

// Twin request operations.
const (
	opGet   = "GET"
	opPatch = "PATCH"
)

// twinRequest is a module's request on a twin topic.
type twinRequest struct {
	op  string // opGet or opPatch
	rid string // $rid as the module wrote it, echoed in the response topic
}

// parseTwinTopic parses the topic of a twin request:
// $iothub/twin/GET/?$rid={rid} or
// $iothub/twin/PATCH/properties/reported/?$rid={rid}. The property bag may
// carry other properties, which are ignored as IoT Hub ignores them; $rid
// is required.
func parseTwinTopic(topic string) (twinRequest, error) {
	var req twinRequest
	rest, ok := strings.CutPrefix(topic, topicGet)
	if ok {
		req.op = opGet
	} else if rest, ok = strings.CutPrefix(topic, topicPatch); ok {
		req.op = opPatch
	} else {
		return req, fmt.Errorf("topic %q is not a twin request (%s?$rid=… or %s?$rid=…)", topic, topicGet, topicPatch)
	}
	bag, ok := strings.CutPrefix(rest, "?")
	if !ok {
		return req, fmt.Errorf("topic %q has no property bag: end it with ?$rid={request id}", topic)
	}
	props, err := parsePropertyBag(bag)
	if err != nil {
		return req, fmt.Errorf("topic %q: %w", topic, err)
	}
	rid, ok := props["$rid"]
	switch {
	case !ok || rid == "":
		return req, fmt.Errorf("topic %q has no $rid: end it with ?$rid={request id}", topic)
	case len(rid) > maxRequestIDSize:
		return req, fmt.Errorf("topic %q: $rid is %d bytes, at most %d are allowed", topic, len(rid), maxRequestIDSize)
	case strings.ContainsAny(rid, "/+#&?\x00"):
		return req, fmt.Errorf("topic %q: $rid may not contain / + # & ? or NUL", topic)
	}
	req.rid = rid
	return req, nil
}

// parsePropertyBag parses an MQTT property bag, "k=v&k2=v2", url-decoding
// names and values. A name without "=" has the empty value. Empty fields
// (as in "&&") are skipped.
func parsePropertyBag(bag string) (map[string]string, error) {
	if len(bag) > maxPropertyBag {
		return nil, fmt.Errorf("the property bag is %d bytes, at most %d are allowed", len(bag), maxPropertyBag)
	}
	props := map[string]string{}
	for field := range strings.SplitSeq(bag, "&") {
		if field == "" {
			continue
		}
		k, v, _ := strings.Cut(field, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			return nil, fmt.Errorf("property name %q is not valid url-encoding", k)
		}
		value, err := url.QueryUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("property %q: value is not valid url-encoding", name)
		}
		if name == "" {
			return nil, errors.New("a property has an empty name")
		}
		if _, dup := props[name]; dup {
			return nil, fmt.Errorf("property %q appears twice", name)
		}
		props[name] = value
	}
	return props, nil
}

// responseTopic is where the answer to request rid goes; version is added
// when it is not 0 (the new reported $version after a patch).
func responseTopic(status int, rid string, version int64) string {
	t := topicResponse + strconv.Itoa(status) + "/?$rid=" + url.QueryEscape(rid)
	if version != 0 {
		t += "&$version=" + strconv.FormatInt(version, 10)
	}
	return t
}

// desiredTopic is where a desired patch of version goes.
func desiredTopic(version int64) string {
	return topicDesired + "?$version=" + strconv.FormatInt(version, 10)
}

// withVersion adds "$version": v to a JSON object.
func withVersion(obj []byte, v int64) []byte {
	out := make([]byte, 0, len(obj)+32)
	out = append(out, obj[:len(obj)-1]...) // drop '}'
	if len(obj) > 2 {
		out = append(out, ',')
	}
	out = append(out, `"$version":`...)
	out = strconv.AppendInt(out, v, 10)
	return append(out, '}')
}
