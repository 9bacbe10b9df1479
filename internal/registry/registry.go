// Package registry is the hub's model: device and module identities and
// their twins, kept in a store.Store. It knows nothing of HTTP; the hub's
// server maps its errors to status codes and the CLI to exit codes.
//
// Store layout (one record each):
//
//	devices/{deviceId}               Device
//	modules/{deviceId}/{moduleId}    Module
//	twins/{deviceId}                 the device twin
//	twins/{deviceId}/{moduleId}      the module twin
//	devicesync/{deviceId}            the hub's record of the device's uploads
//
// Writes that span records (creating a device with its system modules,
// deleting a device with everything of it, applying a deployment) are one
// store transaction each: all or nothing.
//
// The etag of a device or module is derived from its store version, so a
// compare-and-swap on the etag is a compare-and-swap on the record.
package registry

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/store"
)

// Errors callers tell apart with errors.Is.
var (
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists")
	ErrPrecondition = errors.New("precondition failed")
	ErrInvalid      = errors.New("invalid")
)

// The identity types are the wire types of the hub's API.
type (
	Device         = hubapi.Device
	Module         = hubapi.Module
	Authentication = hubapi.Authentication
	SymmetricKey   = hubapi.SymmetricKey
	Capabilities   = hubapi.Capabilities
)

// Registry holds identities and twins in a store.
type Registry struct {
	st  store.Store
	now func() time.Time
	// owned names the records of other parts that belong to a device and
	// are deleted with it (OwnDeviceData).
	owned   []func(deviceID string) (keys, prefixes []string)
	twins   twinCache
	devices identityCache[Device]
	modules identityCache[Module]
	// getShared is the store's Get or, where it has one, its GetShared:
	// the value it returns is read, never changed.
	getShared func(key string) (store.Record, error)
}

// New returns a registry over st.
func New(st store.Store) *Registry {
	r := &Registry{st: st, now: func() time.Time { return time.Now().UTC() }, getShared: st.Get}
	if g, ok := st.(sharedGetter); ok {
		r.getShared = g.GetShared
	}
	return r
}

// sharedGetter is a store that can lend its own copy of a value (the file
// store): reads that only decode the value need no copy of it.
type sharedGetter interface {
	GetShared(key string) (store.Record, error)
}

// OwnDeviceData registers records kept by other parts (the hub's telemetry)
// that belong to a device: DeleteDevice deletes them in the same transaction
// as the device, so that a device created again under the same id starts
// with none of them.
func (r *Registry) OwnDeviceData(f func(deviceID string) (keys, prefixes []string)) {
	r.owned = append(r.owned, f)
}

// SetClock replaces the clock; for tests.
func (r *Registry) SetClock(now func() time.Time) { r.now = now }

func deviceKey(id string) string      { return "devices/" + id }
func moduleKey(id, mid string) string { return "modules/" + id + "/" + mid }

// DeviceSyncKey is the key of the hub's sync record of a device, deleted with the device.
func DeviceSyncKey(id string) string { return "devicesync/" + id }

func twinKey(id, mid string) string {
	if mid == "" {
		return "twins/" + id
	}
	return "twins/" + id + "/" + mid
}

// ETagOf makes an identity etag from a store version (IoT Hub's etags are
// opaque base64 strings).
func ETagOf(version int64) string {
	return base64.StdEncoding.EncodeToString([]byte(strconv.FormatInt(version, 10)))
}

// versionOf is ETagOf's inverse; "" and "*" mean any version.
func versionOf(etag string) (int64, error) {
	etag = strings.Trim(etag, `"`)
	if etag == "" || etag == "*" {
		return store.Any, nil
	}
	b, err := base64.StdEncoding.DecodeString(etag)
	if err == nil {
		if v, err := strconv.ParseInt(string(b), 10, 64); err == nil && v > 0 {
			return v, nil
		}
	}
	return 0, fmt.Errorf("%w: etag %q does not match the current one", ErrPrecondition, etag)
}

// newGenerationID returns a generation id in IoT Hub's form (18 digits).
func newGenerationID() string {
	n, err := rand.Int(rand.Reader, big.NewInt(1e17))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return fmt.Sprintf("63%016d", n.Int64()%1e16)
}

// fillAuth validates the keys of auth or generates them when empty.
func fillAuth(auth *Authentication, what string) (*Authentication, error) {
	if auth == nil {
		auth = &Authentication{Type: "sas"}
	}
	switch auth.Type {
	case "", "sas":
		auth.Type = "sas"
	default:
		return nil, fmt.Errorf("%w: %s: authentication type %q is not supported (use \"sas\")", ErrInvalid, what, auth.Type)
	}
	if auth.SymmetricKey == nil {
		auth.SymmetricKey = &SymmetricKey{}
	}
	for _, k := range []*string{&auth.SymmetricKey.PrimaryKey, &auth.SymmetricKey.SecondaryKey} {
		if *k == "" {
			key, err := identity.NewKey()
			if err != nil {
				return nil, err
			}
			*k = key
		} else if err := identity.ValidateKey(*k); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, what, err)
		}
	}
	return auth, nil
}

// NotFoundError says which device or module does not exist. It is
// ErrNotFound for errors.Is.
type NotFoundError struct {
	Kind string // "Device" or "Module"
	Name string // d1 or d1/m1
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("%s %q not found", strings.ToLower(e.Kind), e.Name)
}

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

func deviceNotFound(id string) error { return &NotFoundError{Kind: "Device", Name: id} }
func moduleNotFound(deviceID, mid string) error {
	return &NotFoundError{Kind: "Module", Name: deviceID + "/" + mid}
}

func storeErr(err error, what string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: %s", ErrNotFound, what)
	case errors.Is(err, store.ErrConflict):
		return fmt.Errorf("%w: %s was changed by someone else (etag mismatch)", ErrPrecondition, what)
	}
	return err
}

func decodeRecord[T any](rec store.Record) (T, error) {
	var v T
	if err := json.Unmarshal(rec.Value, &v); err != nil {
		return v, fmt.Errorf("record %s: %w", rec.Key, err)
	}
	return v, nil
}
