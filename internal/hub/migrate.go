package hub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/outpost-edge/outpost/internal/store"
)

// MigrateResult counts what MigrateStore did.
type MigrateResult struct {
	Records int // in the data dir's store
	Copied  int // written to the destination now
	Already int // there already with the same value (an earlier run)
	CA      bool
}

// notMigrated are records a copy must not carry: the cursor key, so that every
// device syncs in full once against the new store (its versions are new), and
// the CA record, which MigrateStore writes from the CA files.
var notMigrated = map[string]bool{cursorKeyRecord: true, caStoreKey: true}

// MigrateStore copies the records of the file-store hub in dataDir (which must
// not be running: its store is locked) into dst, and its CA files into the
// record replicas share the CA through, so that clients keep trusting the hub.
// A record already in dst with the same value is left alone, so that a second
// run (after an interruption) copies only the rest. progress, if not nil, is
// called every 1000 records.
func MigrateStore(dataDir string, dst store.Store, progress func(done, total int)) (MigrateResult, error) {
	var res MigrateResult
	src, err := openDataDirStore(dataDir)
	if err != nil {
		return res, err
	}
	defer src.Close()
	recs, err := src.List("")
	if err != nil {
		return res, err
	}
	for _, r := range recs {
		if notMigrated[r.Key] {
			continue
		}
		res.Records++
		cur, err := dst.Get(r.Key)
		switch {
		case err == nil && bytes.Equal(cur.Value, r.Value):
			res.Already++
		case err == nil || errors.Is(err, store.ErrNotFound):
			if _, err := dst.Put(r.Key, r.Value, store.Any); err != nil {
				return res, fmt.Errorf("copy %s: %w (run the migration again: it goes on where it stopped)", r.Key, err)
			}
			res.Copied++
		default:
			return res, err
		}
		if progress != nil && res.Records%1000 == 0 {
			progress(res.Records, len(recs))
		}
	}
	cert, cerr := os.ReadFile(filepath.Join(dataDir, CAFile))
	key, kerr := os.ReadFile(filepath.Join(dataDir, caKeyFile))
	if cerr == nil && kerr == nil {
		b, _ := json.Marshal(sharedCA{Cert: string(cert), Key: string(key)})
		if _, err := dst.Put(caStoreKey, b, store.Any); err != nil {
			return res, fmt.Errorf("copy the CA: %w", err)
		}
		res.CA = true
	}
	return res, nil
}

// VerifyResult lists the records that differ between a data dir and a store.
type VerifyResult struct {
	Records   int
	Missing   []string // in the data dir, not in the store
	Different []string // in both, with different values
	Extra     []string // in the store only
}

// OK reports whether the store holds exactly the data dir's records.
func (v VerifyResult) OK() bool { return len(v.Missing)+len(v.Different)+len(v.Extra) == 0 }

// VerifyMigration compares the records of the file-store hub in dataDir with dst.
func VerifyMigration(dataDir string, dst store.Store) (VerifyResult, error) {
	var res VerifyResult
	src, err := openDataDirStore(dataDir)
	if err != nil {
		return res, err
	}
	defer src.Close()
	recs, err := src.List("")
	if err != nil {
		return res, err
	}
	have, err := dst.List("")
	if err != nil {
		return res, err
	}
	in := map[string][]byte{}
	for _, r := range have {
		in[r.Key] = r.Value
	}
	for _, r := range recs {
		if notMigrated[r.Key] {
			continue
		}
		res.Records++
		v, ok := in[r.Key]
		switch {
		case !ok:
			res.Missing = append(res.Missing, r.Key)
		case !bytes.Equal(v, r.Value):
			res.Different = append(res.Different, r.Key)
		}
		delete(in, r.Key)
	}
	for k := range in {
		if !notMigrated[k] && k != caRecordKey {
			res.Extra = append(res.Extra, k)
		}
	}
	slices.Sort(res.Extra)
	return res, nil
}

// openDataDirStore opens the store of the hub data dir dataDir, refusing a dir
// that holds none (rather than making an empty one there).
func openDataDirStore(dataDir string) (*store.FileStore, error) {
	if !exists(filepath.Join(dataDir, storeDirName, "records")) {
		return nil, fmt.Errorf("%s holds no hub store (no %s): give the data dir of a hub that was started once",
			dataDir, filepath.Join(storeDirName, "records"))
	}
	src, err := store.Open(filepath.Join(dataDir, storeDirName))
	if err != nil {
		return nil, fmt.Errorf("open the hub's store in %s: %w (stop the hub first)", dataDir, err)
	}
	return src, nil
}
