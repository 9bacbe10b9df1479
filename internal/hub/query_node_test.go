package hub_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

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
	node, dir := sdktest.NodeDir(t, "azure-iothub")
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

	runCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(runCtx, node, "--test", "--test-reporter=spec", "query.test.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"OUTPOST_TEST_CS="+h.ConnectionString,
		"OUTPOST_TEST_FLEET="+prefix,
		"NODE_EXTRA_CA_CERTS="+h.CAFile,
		"NO_COLOR=1",
	)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if runCtx.Err() != nil {
		t.Fatalf("node --test did not finish in 60 s:\n%s", out)
	}
	if err != nil {
		t.Fatalf("azure-iothub queries against the hub failed (%v):\n%s", err, out)
	}
	t.Logf("node --test %s:\n%s", filepath.Join(dir, "query.test.js"), out)
}
