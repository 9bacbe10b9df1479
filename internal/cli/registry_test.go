package cli

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// serveRegistry runs outpost registry serve over dir on a free loopback
// port and returns its address and a stop function (which checks it exits 0).
func serveRegistry(t *testing.T, dir string) (string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errOut := &syncBuffer{}, &syncBuffer{}
	ios := &IOStreams{In: strings.NewReader(""), Out: out, ErrOut: errOut, noColor: true}
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, ios, []string{"registry", "serve", "--data", dir, "--listen", "127.0.0.1:0", "-o", "json"})
	}()
	var res registryResult
	waitFor(t, 10*time.Second, "the registry's address", func() bool {
		select {
		case code := <-done:
			t.Fatalf("registry serve exited %d: %s", code, errOut)
		default:
		}
		return json.Unmarshal([]byte(out.String()), &res) == nil
	})
	if res.DataDir != dir || !strings.HasPrefix(res.Address, "127.0.0.1:") || !strings.Contains(errOut.String(), "registry serving http://"+res.Address) {
		t.Fatalf("registry serve printed %+v; stderr %s", res, errOut)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("registry serve exited %d: %s", code, errOut)
			}
		case <-time.After(10 * time.Second):
			t.Error("registry serve did not stop")
		}
	}
	t.Cleanup(stop)
	return res.Address, stop
}

// TestRegistryServePersists: an image pushed to outpost registry serve is
// pulled whole from the next registry serve over the same --data.
func TestRegistryServePersists(t *testing.T) {
	t.Setenv("OUTPOST_CONFIG", "")
	dir := filepath.Join(t.TempDir(), "registry")
	addr, stop := serveRegistry(t, dir)
	img, err := random.Image(4096, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(addr + "/tempsensor:1.0")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	stop()

	addr, _ = serveRegistry(t, dir)
	ref, _ = name.ParseReference(addr + "/tempsensor:1.0")
	got, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pull after a restart: %v", err)
	}
	want, _ := img.Digest()
	if d, _ := got.Digest(); d != want {
		t.Errorf("digest %s after a restart, want %s", d, want)
	}
	if err := validate.Image(got); err != nil {
		t.Errorf("the image pulled after a restart: %v", err)
	}

	// The port is taken: a clear error that says what to do.
	code, _, errOut := run(t, "registry", "serve", "--data", t.TempDir(), "--listen", addr)
	if code != ExitFailure || !strings.Contains(errOut, "listen on "+addr) || !strings.Contains(errOut, "--listen") {
		t.Errorf("a second registry on %s: %d %s", addr, code, errOut)
	}
}
