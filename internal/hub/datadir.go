package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/outpost-edge/outpost/internal/store"
)

// The hub's data dir holds:
//
//	store/             the registry (devices, modules, twins) and the policies
//	ca.pem ca-key.pem  the hub's CA, which clients trust
//	server.pem server-key.pem  its certificate, reissued from the CA as needed
//	credentials.json   the owner connection string and CA file, for `hub credentials`
//
// A data dir that is missing or empty is set up on start. One that holds anything is
// never set up again implicitly: if part of its state is gone, the hub refuses to start
// and says what is missing, until the user restores it or asks for new state with
// Config.Reinit (`hub serve --reinit`).

// The hub's own records in its store.
const (
	ownerPolicyKey = "policies/owner"
	caRecordKey    = "hub/ca"                // a CA was made: its files must be there
	shownKey       = "hub/credentials-shown" // the owner connection string was printed
)

const storeDirName = "store"

// MissingStateError is the refusal to start on a data dir that was set up before but
// lacks part of its state.
type MissingStateError struct {
	DataDir string
	Missing []string // what is missing, and what --reinit would do about it
}

func (e *MissingStateError) Error() string {
	return fmt.Sprintf("hub data dir %s was set up before, but part of its state is missing:\n  - %s\n"+
		"Starting anyway would silently replace it. Restore what is missing from a backup (or point --data at "+
		"the right dir), or start once with --reinit to make new state for what is missing",
		e.DataDir, strings.Join(e.Missing, "\n  - "))
}

// isFresh reports whether dir is missing or empty (a lost+found aside): a data dir never
// set up.
func isFresh(dir string) (bool, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("hub data dir: %w", err)
	}
	for _, e := range ents {
		if e.Name() != "lost+found" {
			return false, nil
		}
	}
	return true, nil
}

// removeContents empties dir, after a first start that failed half way.
func removeContents(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != "lost+found" {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// missingStore names the store's records dir if it is gone.
func missingStore(dir string) []string {
	if exists(filepath.Join(dir, storeDirName, "records")) {
		return nil
	}
	return []string{fmt.Sprintf("%s (the registry: devices, modules, twins and the owner policy): "+
		"--reinit starts an empty registry with a new owner key", filepath.Join(storeDirName, "records"))}
}

// missingCA names the CA files that are gone, if the hub ever had a CA: if any of its
// PKI files are there, or (made) the store says a CA was made.
func missingCA(dir string, made bool) []string {
	for _, f := range []string{CAFile, caKeyFile, serverCertFile, serverKeyFile} {
		made = made || exists(filepath.Join(dir, f))
	}
	if !made {
		return nil // TLS never ran here: the CA is made now, not remade
	}
	var missing []string
	for _, f := range []string{caKeyFile, CAFile} {
		if !exists(filepath.Join(dir, f)) {
			missing = append(missing, fmt.Sprintf("%s (the hub's CA, which clients trust): --reinit makes a new CA, "+
				"and every client must then trust the new %s", f, CAFile))
		}
	}
	return missing
}

// openStore opens the hub's store into h.st. On a data dir set up before it first
// checks that all of its state is there, and fails with a *MissingStateError if not
// (unless Config.Reinit).
func (h *Hub) openStore(fresh bool) (err error) {
	if h.cfg.Store != nil {
		h.st = h.cfg.Store // shared by replicas: what is on this disk is a copy
		return nil
	}
	dir := h.cfg.DataDir
	useTLS := !h.cfg.InsecureHTTP
	var missing []string
	if !fresh {
		// Check the files before the store is opened: opening makes an empty store.
		missing = missingStore(dir)
		if useTLS {
			missing = append(missing, missingCA(dir, false)...)
		}
		if len(missing) > 0 && !h.cfg.Reinit {
			return &MissingStateError{DataDir: dir, Missing: missing}
		}
	}
	hadRecords := exists(filepath.Join(dir, storeDirName, "records"))
	st, err := store.Open(filepath.Join(dir, storeDirName))
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	if !fresh {
		// What only the store can tell: a CA was made, the owner policy.
		var late []string
		if _, err := st.Get(caRecordKey); err == nil && useTLS && len(missingCA(dir, false)) == 0 {
			late = missingCA(dir, true)
		}
		if _, err := st.Get(ownerPolicyKey); errors.Is(err, store.ErrNotFound) && hadRecords {
			late = append(late, fmt.Sprintf("the owner policy (record %s in %s): --reinit makes a new owner key, "+
				"and clients need the new connection string", ownerPolicyKey, filepath.Join(storeDirName, "records")))
		}
		if len(late) > 0 && !h.cfg.Reinit {
			return &MissingStateError{DataDir: dir, Missing: late}
		}
		for _, m := range append(missing, late...) {
			h.log.Warn("hub: --reinit: making new state for what is missing", "missing", m)
		}
	}
	h.st = st
	return nil
}

// recordCA notes in the store that the hub has a CA, so that its files going missing is
// noticed. It is best effort on a full disk: the files being there is what counts now.
func (h *Hub) recordCA() {
	if _, err := h.st.Get(caRecordKey); err == nil {
		return
	}
	b, _ := json.Marshal(map[string]string{"caFile": CAFile, "keyFile": caKeyFile})
	if _, err := h.st.Put(caRecordKey, b, 0); err != nil && !errors.Is(err, store.ErrConflict) {
		h.log.Warn("hub: could not note that the CA exists", "err", err)
	}
}

// CredentialsShown notes that the owner connection string was shown, so that Open no
// longer reports it as never shown.
func (h *Hub) CredentialsShown() error {
	if _, err := h.st.Put(shownKey, []byte(`true`), store.Any); err != nil {
		return fmt.Errorf("hub: note that the owner credentials were shown: %w", err)
	}
	return nil
}

// credentialsShown reports whether CredentialsShown was ever called on this data dir.
func (h *Hub) credentialsShown() bool {
	_, err := h.st.Get(shownKey)
	return err == nil
}
