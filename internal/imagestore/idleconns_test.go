package imagestore

import (
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestPullClosesIdleConnections: once no pull runs, the store keeps no connection to
// the registry open (the transport would keep them idle for 90 s).
func TestPullClosesIdleConnections(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	srv := httptest.NewUnstartedServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	srv.Config.ConnState = func(c net.Conn, st http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch st {
		case http.StateNew:
			open[c] = true
		case http.StateClosed, http.StateHijacked:
			delete(open, c)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	reg := &testRegistry{Addr: strings.TrimPrefix(srv.URL, "http://"), srv: srv, corrupt: map[string]bool{}}
	img := image(t, v1.Platform{}, layer(t, file("app", "v1")))
	ref := reg.ref("app:1.0")
	reg.push(t, ref, img)
	// The push's own connections (another transport) are not the store's: close them
	// before pulling.
	remote.DefaultTransport.(*http.Transport).CloseIdleConnections()

	s := openStore(t, t.TempDir())
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if _, err := s.Pull(ctx, ref, nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// The server sees a closed connection once it reads its end; wait for that, not
	// for the transport's idle timeout.
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(open)
		mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connection(s) to the registry still open after the pulls ended", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
