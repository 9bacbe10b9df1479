package cli

import (
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/store/etcdstore/etcdtest"
)

// TestHubStoreFlags checks that bad store flags are refused, naming the flag.
func TestHubStoreFlags(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--store", "redis"}, `--store "redis": want file or etcd`},
		{[]string{"--store", "etcd"}, "--store etcd needs --etcd-endpoints"},
		{[]string{"--etcd-endpoints", "http://127.0.0.1:1"}, "--etcd-endpoints is for --store etcd"},
		{[]string{"--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:1", "--etcd-prefix", "outpost"}, `--etcd-prefix "outpost": want a path`},
		{[]string{"--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:1", "--etcd-cert", "c.pem"}, "give both --etcd-cert and --etcd-key"},
		{[]string{"--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:1", "--etcd-user", "root"}, "OUTPOST_ETCD_PASSWORD"},
	} {
		code, _, stderr := run(t, append([]string{"hub", "serve", "--data", dir, "--listen", "127.0.0.1:0"}, tc.args...)...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("hub serve %q: exit %d, stderr %q, want it to say %q", tc.args, code, stderr, tc.want)
		}
	}
	for _, tc := range []struct {
		to, want string
	}{
		{"http://127.0.0.1:2379/outpost", "want etcd://HOST:PORT"},
		{"etcd://127.0.0.1:2379", "no /PREFIX"},
		{"etcd://127.0.0.1/outpost", `"127.0.0.1" is not HOST:PORT`},
	} {
		code, _, stderr := run(t, "hub", "migrate", "--from", dir, "--to", tc.to)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("hub migrate --to %q: exit %d, stderr %q, want it to say %q", tc.to, code, stderr, tc.want)
		}
	}
}

// TestHubMigrateCommand checks that hub migrate refuses a dir that holds no hub
// store instead of migrating nothing from it (the copy itself: hub.TestMigrateToEtcd).
func TestHubMigrateCommand(t *testing.T) {
	c := etcdtest.Start(t, 1)
	dir := t.TempDir()
	if code, _, stderr := run(t, "hub", "migrate", "--from", dir, "--to", "etcd://"+strings.TrimPrefix(c.Endpoints()[0], "http://")+"/outpost"); code == 0 || !strings.Contains(stderr, "holds no hub store") {
		t.Fatalf("migrate from a dir with no hub store: exit %d, %s", code, stderr)
	}
}
