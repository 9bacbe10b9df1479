package hub

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/outpost-edge/outpost/internal/atomicfile"
	"github.com/outpost-edge/outpost/internal/registry"
	"github.com/outpost-edge/outpost/internal/store"
)

// A hub on a shared store (Config.Store: etcd) is one of any number of
// replicas. Everything they must agree on is in the store: the registry, the
// policies and their keys, the sync cursor key, each device's sync record, and
// (unless every replica is given --tls-cert/--tls-key) the hub's CA, which the
// first replica makes and the others take from the store. Each replica keeps in
// its data dir only copies: the CA's files (so that `hub credentials` and
// clients find ca.pem as on one machine), its own server certificate issued
// from that CA, and credentials.json.

// caStoreKey holds the CA shared by replicas: {"cert": PEM, "key": PEM}.
const caStoreKey = "hub/tls-ca"

type sharedCA struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// serverCert is the certificate the hub serves.
func (h *Hub) serverCert(names []string) (*tls.Certificate, error) {
	if h.cfg.TLSCertFile != "" || h.cfg.TLSKeyFile != "" {
		if h.cfg.TLSCertFile == "" || h.cfg.TLSKeyFile == "" {
			return nil, errors.New("hub: give both --tls-cert and --tls-key, or neither")
		}
		cert, err := tls.LoadX509KeyPair(h.cfg.TLSCertFile, h.cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("hub: load --tls-cert %s and --tls-key %s: %w", h.cfg.TLSCertFile, h.cfg.TLSKeyFile, err)
		}
		return &cert, nil
	}
	if h.cfg.Store != nil {
		if err := h.syncSharedCA(); err != nil {
			return nil, err
		}
	}
	return ensureTLS(h.cfg.DataDir, names, h.now())
}

// syncSharedCA makes the data dir's CA files the CA in the store: the store's
// if there is one, else the data dir's (made now if missing), put in the store
// unless another replica put its own first.
func (h *Hub) syncSharedCA() error {
	dir := h.cfg.DataDir
	for range 3 {
		rec, err := h.st.Get(caStoreKey)
		if err == nil {
			var ca sharedCA
			if err := json.Unmarshal(rec.Value, &ca); err != nil || ca.Cert == "" || ca.Key == "" {
				return fmt.Errorf("hub: record %s (the CA shared by replicas) is damaged: %v; restore it, or delete it to have a new CA made that every client must then trust", caStoreKey, err)
			}
			return writeCAFiles(dir, []byte(ca.Cert), []byte(ca.Key))
		}
		if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("hub: read the shared CA: %w", err)
		}
		if _, _, err := loadOrCreateCA(dir, h.now()); err != nil {
			return err
		}
		certPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
		if err != nil {
			return err
		}
		keyPEM, err := os.ReadFile(filepath.Join(dir, caKeyFile))
		if err != nil {
			return err
		}
		b, _ := json.Marshal(sharedCA{Cert: string(certPEM), Key: string(keyPEM)})
		if _, err := h.st.Put(caStoreKey, b, 0); err == nil {
			h.log.Info("hub: the CA of this data dir is now the one every replica serves from", "record", caStoreKey)
			return nil
		} else if !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("hub: store the shared CA: %w", err)
		}
		// Another replica stored its CA first: take that one.
	}
	return fmt.Errorf("hub: record %s keeps changing: is another replica deleting it?", caStoreKey)
}

// writeCAFiles writes the CA's files if they differ.
func writeCAFiles(dir string, certPEM, keyPEM []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{caKeyFile, keyPEM}, {CAFile, certPEM}} {
		path := filepath.Join(dir, f.name)
		if old, err := os.ReadFile(path); err == nil && string(old) == string(f.data) {
			continue
		}
		if err := atomicfile.WriteFile(path, f.data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// systemModulesKey marks a shared store whose devices all have IoT Edge's
// system module names: written by the first replica that migrated them, so
// that the replicas after it do not read every device again when they start
// (five etcd round trips a device: over a minute for 10,000). A hub writes
// new devices with those names already.
const systemModulesKey = "hub/system-modules"

// migrateSystemModules renames $agent records to $edgeAgent and adds
// $edgeHub where a device lacks it (registry.MigrateSystemModules), once per
// shared store, on every open of a data dir.
func (h *Hub) migrateSystemModules() error {
	shared := h.cfg.Store != nil
	if shared {
		if _, err := h.st.Get(systemModulesKey); err == nil {
			return nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("hub: read %s: %w", systemModulesKey, err)
		}
	}
	n, err := registry.New(h.st).MigrateSystemModules()
	if err != nil {
		return fmt.Errorf("hub: %w (the data dir is as it was: fix the cause and start again)", err)
	}
	if n > 0 {
		h.log.Info("hub: migrated devices to IoT Edge's system module names ($agent is now $edgeAgent, $edgeHub added)", "devices", n)
	}
	if shared {
		if _, err := h.st.Put(systemModulesKey, []byte(`{"migrated":true}`), 0); err != nil && !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("hub: write %s: %w", systemModulesKey, err)
		}
	}
	return nil
}

// StoreBackend names the store the hub's records are in: "file" or "etcd".
func (h *Hub) StoreBackend() string {
	if h.cfg.Store != nil {
		return "etcd"
	}
	return "file"
}

// compactingStore is a store that forgets history (etcd compacts it).
type compactingStore interface {
	Compacted(rev int64) (bool, error)
}

// notCompacted returns since, the revision of a device's cursor, or 0 (a full
// sync) when the store has compacted its history past it: never a silent gap.
func (h *Hub) notCompacted(id string, since int64) int64 {
	cs, ok := h.st.(compactingStore)
	if !ok || since == 0 {
		return since
	}
	gone, err := cs.Compacted(since)
	if err != nil || gone {
		h.log.Info("sync: cursor older than the store's compacted history (or the check failed), syncing in full", "device", id, "revision", since, "err", err)
		return 0
	}
	return since
}
