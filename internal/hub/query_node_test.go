package hub_test

import (
	"fmt"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/hubtest"
	"github.com/outpost-edge/outpost/internal/sdktest"
)

// TestNodeQuery runs the query API of Microsoft's Node.js service SDK
// (azure-iothub, unmodified; compat/node/query.test.js) against a hub on
// 127.0.0.1:443 as "localhost" (the SDK always connects to port 443):
// createQuery(sql, pageSize) with nextAsTwin() to the end, next() for
// projections and aggregates, and a parse error. It needs root (or
// CAP_NET_BIND_SERVICE), node and compat/node's npm packages.
func TestNodeQuery(t *testing.T) {
	sdktest.NodeDir(t, "azure-iothub")       // skip early without node
	ln := sdktest.Listen(t, "127.0.0.1:443") // the port's lock, for this test
	ln.Close()
	h := hubtest.Start(t, hubtest.Options{Listen: "127.0.0.1:443", HostName: "localhost"})
	c := h.Client(t)
	const prefix = "nodequery"
	for i := range 25 {
		id := fmt.Sprintf("%s-%02d", prefix, i)
		plant := "Berlin"
		if i%2 == 0 {
			plant = "Hannover01"
		}
		createTwins(t, c, id, plant, i)
	}

	runNode(t, "query.test.js",
		"OUTPOST_TEST_CS="+h.ConnectionString,
		"OUTPOST_TEST_FLEET="+prefix,
		"NODE_EXTRA_CA_CERTS="+h.CAFile,
	)
}
