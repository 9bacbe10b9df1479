package hub_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/internal/hub"
)

func openHub(t *testing.T, cfg hub.Config) (*hub.Hub, bool, error) {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	h, show, err := hub.Open(cfg)
	if err == nil {
		t.Cleanup(func() { h.Close() })
	}
	return h, show, err
}

// TestMissingStateRefused removes each part of a set-up data dir in turn: the hub refuses
// to start naming it and changes nothing, and starts with Reinit, making new state.
func TestMissingStateRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		remove []string // globs in the data dir
		want   string
	}{
		{"records", []string{"store/records"}, "store/records"},
		{"store", []string{"store"}, "store/records"},
		{"owner policy", []string{"store/records/policies*owner.json"}, "owner policy"},
		{"CA key", []string{"ca-key.pem"}, "ca-key.pem"},
		{"CA cert", []string{"ca.pem"}, "ca.pem"},
		{"all PKI files", []string{"*.pem"}, "ca-key.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "hub")
			h, show, err := openHub(t, hub.Config{DataDir: dir})
			if err != nil || !show {
				t.Fatalf("first start: show %v, %v", show, err)
			}
			before := h.Credentials()
			h.Close()
			ca, _ := os.ReadFile(filepath.Join(dir, hub.CAFile))
			for _, g := range tc.remove {
				matches, _ := filepath.Glob(filepath.Join(dir, g))
				if len(matches) == 0 {
					t.Fatalf("nothing matches %s", g)
				}
				for _, m := range matches {
					if err := os.RemoveAll(m); err != nil {
						t.Fatal(err)
					}
				}
			}
			list := func() []string {
				var names []string
				filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
					if d != nil && d.Name() != "LOCK" {
						names = append(names, p)
					}
					return nil
				})
				return names
			}
			was := list()
			_, _, err = openHub(t, hub.Config{DataDir: dir})
			var me *hub.MissingStateError
			if !errors.As(err, &me) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--reinit") {
				t.Fatalf("start with %s missing: %v, want a refusal naming %s", tc.name, err, tc.want)
			}
			if now := list(); strings.Join(now, "\n") != strings.Join(was, "\n") {
				t.Fatalf("the refused start changed the data dir:\n%v\nwas\n%v", now, was)
			}
			h, _, err = openHub(t, hub.Config{DataDir: dir, Reinit: true})
			if err != nil {
				t.Fatalf("start with --reinit: %v", err)
			}
			after := h.Credentials()
			key := func(c hub.Credentials) string { // the port changes from start to start
				_, k, _ := strings.Cut(c.ConnectionString, "SharedAccessKey=")
				k, _, _ = strings.Cut(k, ";")
				return k
			}
			newCA, _ := os.ReadFile(filepath.Join(dir, hub.CAFile))
			switch tc.name {
			case "CA key", "CA cert", "all PKI files":
				if string(newCA) == string(ca) || key(after) != key(before) {
					t.Errorf("reinit of the CA: new CA %v, same owner %v", string(newCA) != string(ca), key(after) == key(before))
				}
			default:
				if string(newCA) != string(ca) || key(after) == key(before) {
					t.Errorf("reinit of the store: same CA %v, new owner %v", string(newCA) == string(ca), key(after) != key(before))
				}
			}
			h.Close()
			if _, _, err := openHub(t, hub.Config{DataDir: dir}); err != nil {
				t.Fatalf("start after --reinit: %v", err)
			}
		})
	}
}

// TestFailedFirstStart starts a hub on a port in use: it fails and leaves no data dir, so
// the next start is a first start; the owner string is reported as never shown until
// CredentialsShown.
func TestFailedFirstStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := filepath.Join(t.TempDir(), "hub")
	if _, _, err := openHub(t, hub.Config{DataDir: dir, Listen: ln.Addr().String()}); err == nil {
		t.Fatal("a hub started on a port in use")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the failed start left its data dir: %v", err)
	}
	for i, wantShow := range []bool{true, true, false} {
		h, show, err := openHub(t, hub.Config{DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if show != wantShow {
			t.Fatalf("start %d: show credentials %v, want %v", i, show, wantShow)
		}
		if i == 1 {
			if err := h.CredentialsShown(); err != nil {
				t.Fatal(err)
			}
		}
		h.Close()
	}
}
