package hub_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hub"
)

// TestReadCredentialsWaitsForAStartingHub: a hub takes its port before it
// writes its credentials, so `hub credentials` right after the port answers
// waits for the file in an existing data dir; a data dir that does not
// exist is an error saying how to make one.
func TestReadCredentialsWaitsForAStartingHub(t *testing.T) {
	dir := t.TempDir()
	go func() {
		time.Sleep(300 * time.Millisecond)
		os.WriteFile(filepath.Join(dir, hub.CredentialsFile+".tmp"), []byte(`{"connectionString":"HostName=h;SharedAccessKeyName=owner;SharedAccessKey=a2V5"}`), 0o600)
		os.Rename(filepath.Join(dir, hub.CredentialsFile+".tmp"), filepath.Join(dir, hub.CredentialsFile))
	}()
	c, err := hub.ReadCredentials(dir)
	if err != nil || !strings.HasPrefix(c.ConnectionString, "HostName=h;") {
		t.Fatalf("ReadCredentials while the hub starts: %+v, %v", c, err)
	}

	missing := filepath.Join(t.TempDir(), "nohub")
	_, err = hub.ReadCredentials(missing)
	if err == nil || !strings.Contains(err.Error(), "start the hub once with `outpost hub serve --data "+missing+"`") {
		t.Fatalf("ReadCredentials of a missing data dir: %v", err)
	}
}
