package broker

import (
	"strings"
	"testing"
)

// FuzzParseTwinTopic checks the twin topic and property bag parser: it
// never panics, what it accepts has a usable $rid, and the response topic
// made from that $rid parses back to the same $rid.
func FuzzParseTwinTopic(f *testing.F) {
	for _, s := range []string{
		"$iothub/twin/GET/?$rid=1",
		"$iothub/twin/PATCH/properties/reported/?$rid=42&foo=bar",
		"$iothub/twin/PATCH/properties/reported/?$rid=a%20b&&x",
		"$iothub/twin/GET/?$rid=",
		"$iothub/twin/GET/?$rid=1&$rid=2",
		"$iothub/twin/GET/?%zz=1",
		"$iothub/twin/GET/",
		"$iothub/twin/res/200/?$rid=1&$version=3",
		"devices/d/modules/m/messages/events/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		req, err := parseTwinTopic(topic)
		if err != nil {
			if req.rid != "" {
				t.Fatalf("%q: an error with a $rid %q", topic, req.rid)
			}
			return
		}
		if req.op != opGet && req.op != opPatch {
			t.Fatalf("%q: op %q", topic, req.op)
		}
		if req.rid == "" || len(req.rid) > maxRequestIDSize || strings.ContainsAny(req.rid, "/+#&?\x00") {
			t.Fatalf("%q: accepted $rid %q", topic, req.rid)
		}
		res := responseTopic(204, req.rid, 7)
		bag, ok := strings.CutPrefix(res, topicResponse+"204/?")
		if !ok {
			t.Fatalf("response topic %q", res)
		}
		props, err := parsePropertyBag(bag)
		if err != nil || props["$rid"] != req.rid || props["$version"] != "7" {
			t.Fatalf("response topic %q parses to %v, %v; want $rid %q", res, props, err, req.rid)
		}
	})
}
