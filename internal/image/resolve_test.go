package image

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/outpost-edge/outpost/internal/errdefs"
	"github.com/outpost-edge/outpost/internal/image/registrytest"
)

// staticKeychain gives the same credentials for every registry.
type staticKeychain struct{ user, password string }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return &authn.Basic{Username: k.user, Password: k.password}, nil
}

// TestResolve resolves tags against a real in-process registry: an index,
// a registry that answers HEAD badly, one that wants credentials, and a
// missing tag; a reference with a digest needs no registry.
func TestResolve(t *testing.T) {
	ctx := context.Background()
	backend := registrytest.Handler()
	var heads atomic.Int32
	var refuseHead atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		switch {
		case strings.Contains(r.URL.Path, "/private/") && !ok:
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		case strings.Contains(r.URL.Path, "/private/") && (u != "alice" || p != "secret"):
			http.Error(w, `{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}`, http.StatusForbidden)
			return
		case refuseHead.Load() && r.Method == http.MethodHead:
			heads.Add(1)
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	write := func(repo string, kc authn.Keychain) string {
		t.Helper()
		idx, err := random.Index(128, 1, 2)
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := name.ParseReference(host + "/" + repo + ":1")
		if err := remote.WriteIndex(ref, idx, remote.WithAuthFromKeychain(kc)); err != nil {
			t.Fatal(err)
		}
		d, _ := idx.Digest()
		return d.String()
	}
	resolve := func(ref string, kc authn.Keychain) (string, error) {
		r, err := name.ParseReference(ref)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Resolve(ctx, r, ResolveOptions{Keychain: kc})
		return d.String(), err
	}

	public := write("app", authn.DefaultKeychain)
	if got, err := resolve(host+"/app:1", nil); err != nil || got != public {
		t.Errorf("resolve an index: %s %v, want %s", got, err, public)
	}
	refuseHead.Store(true)
	if got, err := resolve(host+"/app:1", nil); err != nil || got != public || heads.Load() == 0 {
		t.Errorf("resolve where HEAD fails: %s %v (HEADs %d), want %s by GET", got, err, heads.Load(), public)
	}
	refuseHead.Store(false)
	alice := staticKeychain{"alice", "secret"}
	private := write("private", alice)
	if got, err := resolve(host+"/private:1", alice); err != nil || got != private {
		t.Errorf("resolve with credentials: %s %v, want %s", got, err, private)
	}
	var aerr *AuthError
	if _, err := resolve(host+"/private:1", authn.NewMultiKeychain()); !errors.As(err, &aerr) || !aerr.Pull || aerr.Status != http.StatusUnauthorized {
		t.Errorf("resolve without credentials: %v, want an AuthError", err)
	}
	if _, err := resolve(host+"/private:1", staticKeychain{"bob", "x"}); !errors.As(err, &aerr) || !strings.Contains(err.Error(), "denied reading private") || !strings.Contains(aerr.Hint(), "may pull") {
		t.Errorf("resolve with credentials that may not read: %v", err)
	}
	var nf *NotFoundError
	_, err := resolve(host+"/app:2", nil)
	if !errors.As(err, &nf) || !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "MANIFEST_UNKNOWN") || !strings.Contains(err.Error(), host+"/app:2") {
		t.Errorf("resolve a missing tag: %v, want a NotFoundError with the registry's answer", err)
	}
	srv.Close()
	pinned := host + "/app:1@" + public
	if got, err := resolve(pinned, nil); err != nil || got != public {
		t.Errorf("resolve a reference with a digest, registry down: %s %v", got, err)
	}
	var uerr *UnavailableError
	if _, err := resolve(host+"/app:1", nil); !errors.As(err, &uerr) {
		t.Errorf("resolve with the registry down: %v, want an UnavailableError", err)
	}
}

// BenchmarkResolve is the cost deploy adds per module: one HEAD to a
// registry on loopback.
func BenchmarkResolve(b *testing.B) {
	reg := registrytest.InProcess(b)
	img, err := random.Image(128, 1)
	if err != nil {
		b.Fatal(err)
	}
	ref, _ := name.ParseReference(reg.Ref("app:1"))
	if err := remote.Write(ref, img); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Resolve(context.Background(), ref, ResolveOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
