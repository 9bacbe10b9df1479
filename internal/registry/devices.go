package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/store"
)

// AgentModule is the system module every device has (IoT Edge's name): its
// twin's desired properties are the device's deployment, its reported ones the
// agent's status.
const AgentModule = "$edgeAgent"

// HubModule is the other system module every device has (IoT Edge's name): its
// twin's desired properties are the manifest's $edgeHub part (routes,
// store-and-forward), its reported ones the device broker's status.
const HubModule = "$edgeHub"

// LegacyAgentModule is the name outpost first gave AgentModule. It is
// accepted as input only (see CanonicalModuleID) and never produced.
const LegacyAgentModule = "$agent"

// CanonicalModuleID maps the old name of the agent's module to its name.
func CanonicalModuleID(id string) string {
	if id == LegacyAgentModule {
		return AgentModule
	}
	return id
}

// ManagedBy marks the module identities outpost created itself.
const ManagedBy = "outpost"

// SystemModules are the modules the hub creates with every IoT Edge device,
// and that users can neither create nor delete.
var SystemModules = []string{AgentModule, HubModule}

// CreateDevice adds a device identity; an IoT Edge device
// (capabilities.iotEdge) gets its system modules ($edgeAgent, $edgeHub) with
// it. Empty keys are generated; status defaults to enabled. Capabilities nil
// makes an edge device, outpost's default (the hub's REST API passes IoT
// Hub's default, a leaf device, when a request names none).
func (r *Registry) CreateDevice(d Device) (Device, error) {
	if err := identity.ValidateDeviceID(d.DeviceID); err != nil {
		return Device{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if d.Capabilities == nil {
		d.Capabilities = &Capabilities{IoTEdge: true}
	}
	if err := r.fillDevice(&d); err != nil {
		return Device{}, err
	}
	d.GenerationID = newGenerationID()
	if err := r.setScopes(&d, nil); err != nil {
		return Device{}, err
	}
	now := r.now()
	d.StatusUpdatedTime, d.ConnectionStateUpdatedTime = now, now
	dev, err := marshalIdentity(d)
	if err != nil {
		return Device{}, err
	}
	// The device (and an edge device's system modules), all or nothing; what an
	// earlier device of that id may have left is dropped with it.
	ops := []store.Op{
		store.PutOp(deviceKey(d.DeviceID), dev, 0),
		store.DeleteOp(twinKey(d.DeviceID, ""), store.Any),
		store.DeleteOp(DeviceSyncKey(d.DeviceID), store.Any),
	}
	if d.Capabilities.IoTEdge {
		for _, mid := range SystemModules {
			_, b, err := r.newModule(Module{DeviceID: d.DeviceID, ModuleID: mid, ManagedBy: ManagedBy})
			if err != nil {
				return Device{}, err
			}
			ops = append(ops, store.PutOp(moduleKey(d.DeviceID, mid), b, store.Any), store.DeleteOp(twinKey(d.DeviceID, mid), store.Any))
		}
	}
	v, err := r.st.Txn(ops...)
	if errors.Is(err, store.ErrConflict) {
		return Device{}, fmt.Errorf("%w: device %q", ErrExists, d.DeviceID)
	}
	if err != nil {
		return Device{}, err
	}
	d.ETag = ETagOf(v)
	return d, nil
}

// UpdateDevice replaces a device's status and keys, if its etag still
// matches ifMatch ("" or "*" for any). What d leaves out is kept: an empty
// status, nil authentication or an empty key (IoT Hub's SDKs send empty keys
// when the caller gave none), and nil capabilities. Capabilities cannot
// change: an edge device stays one.
func (r *Registry) UpdateDevice(d Device, ifMatch string) (Device, error) {
	cur, err := r.GetDevice(d.DeviceID)
	if err != nil {
		return Device{}, err
	}
	expect, err := versionOf(ifMatch)
	if err != nil {
		return Device{}, err
	}
	if expect == store.Any {
		expect, _ = versionOf(cur.ETag)
	}
	if d.Status == "" {
		d.Status = cur.Status
	}
	d.Authentication = keepKeys(d.Authentication, cur.Authentication)
	switch {
	case d.Capabilities == nil:
		d.Capabilities = cur.Capabilities
	case cur.Capabilities != nil && d.Capabilities.IoTEdge != cur.Capabilities.IoTEdge:
		return Device{}, fmt.Errorf("%w: device %q: capabilities.iotEdge is %v and cannot change: delete the device and create it again with the capabilities it needs", ErrInvalid, d.DeviceID, cur.Capabilities.IoTEdge)
	}
	if err := r.fillDevice(&d); err != nil {
		return Device{}, err
	}
	d.GenerationID = cur.GenerationID
	if err := r.setScopes(&d, &cur); err != nil {
		return Device{}, err
	}
	d.ConnectionState, d.ConnectionStateUpdatedTime, d.LastActivityTime = cur.ConnectionState, cur.ConnectionStateUpdatedTime, cur.LastActivityTime
	d.StatusUpdatedTime = cur.StatusUpdatedTime
	if d.Status != cur.Status {
		d.StatusUpdatedTime = r.now()
	}
	v, err := r.putDevice(d, expect)
	if err != nil {
		return Device{}, storeErr(err, fmt.Sprintf("device %q", d.DeviceID))
	}
	d.ETag = ETagOf(v)
	return d, nil
}

func (r *Registry) fillDevice(d *Device) error {
	switch d.Status {
	case "":
		d.Status = "enabled"
	case "enabled", "disabled":
	default:
		return fmt.Errorf("%w: device %q: status %q must be enabled or disabled", ErrInvalid, d.DeviceID, d.Status)
	}
	if d.ConnectionState == "" {
		d.ConnectionState = "Disconnected"
	}
	auth, err := fillAuth(d.Authentication, fmt.Sprintf("device %q", d.DeviceID))
	if err != nil {
		return err
	}
	d.Authentication = auth
	if d.Capabilities == nil { // stored before capabilities were kept: every device was an edge device
		d.Capabilities = &Capabilities{IoTEdge: true}
	}
	return nil
}

// IsEdge reports whether d is an IoT Edge device: one with system modules,
// that takes deployments. A leaf device (capabilities.iotEdge false) has
// neither.
func IsEdge(d Device) bool { return d.Capabilities == nil || d.Capabilities.IoTEdge }

// keepKeys returns auth with the keys it leaves empty taken from cur.
func keepKeys(auth, cur *Authentication) *Authentication {
	if cur == nil || cur.SymmetricKey == nil {
		return auth
	}
	if auth == nil {
		auth = &Authentication{Type: cur.Type}
	}
	out := *auth
	keys := SymmetricKey{}
	if auth.SymmetricKey != nil {
		keys = *auth.SymmetricKey
	}
	if keys.PrimaryKey == "" {
		keys.PrimaryKey = cur.SymmetricKey.PrimaryKey
	}
	if keys.SecondaryKey == "" {
		keys.SecondaryKey = cur.SymmetricKey.SecondaryKey
	}
	out.SymmetricKey = &keys
	return &out
}

func (r *Registry) putDevice(d Device, expect int64) (int64, error) {
	b, err := marshalIdentity(d)
	if err != nil {
		return 0, err
	}
	return r.st.Put(deviceKey(d.DeviceID), b, expect)
}

// marshalIdentity is the stored form of a device or module: its etag is its version.
func marshalIdentity[T Device | Module](v T) ([]byte, error) {
	switch x := any(&v).(type) {
	case *Device:
		x.ETag = ""
	case *Module:
		x.ETag = ""
	}
	return json.Marshal(v)
}

// GetDevice returns a device identity.
func (r *Registry) GetDevice(id string) (Device, error) {
	rec, err := r.getShared(deviceKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return Device{}, deviceNotFound(id)
	}
	if err != nil {
		return Device{}, err
	}
	if d, ok := r.devices.get(rec.Key, rec.Version); ok {
		return cloneDevice(d), nil
	}
	d, err := decodeRecord[Device](rec)
	if err != nil {
		return d, err
	}
	d.ETag = ETagOf(rec.Version)
	ownScope(&d)
	r.devices.put(rec.Key, rec.Version, cloneDevice(d))
	return d, nil
}

// ListDevices returns up to limit devices whose ids sort after `after`, and
// the token for the next page ("" on the last one). limit ≤ 0 means all.
func (r *Registry) ListDevices(after string, limit int) ([]Device, string, error) {
	if after != "" {
		after = deviceKey(after)
	}
	n := 0
	if limit > 0 {
		n = limit + 1 // one more, to know whether there is a next page
	}
	recs, err := r.st.Range("devices/", after, n)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if limit > 0 && len(recs) > limit {
		recs = recs[:limit]
		next = strings.TrimPrefix(recs[limit-1].Key, "devices/")
	}
	out := make([]Device, 0, len(recs))
	for _, rec := range recs {
		d, err := decodeRecord[Device](rec)
		if err != nil {
			return nil, "", err
		}
		d.ETag = ETagOf(rec.Version)
		ownScope(&d)
		out = append(out, d)
	}
	return out, next, nil
}

// DeleteDevice removes a device with its modules, its twins and the hub's sync record
// of it, all or nothing.
func (r *Registry) DeleteDevice(id, ifMatch string) error {
	expect, err := versionOf(ifMatch)
	if err != nil {
		return err
	}
	for {
		cur, err := r.GetDevice(id)
		if err != nil {
			return err
		}
		want := expect
		if want == store.Any {
			want, _ = versionOf(cur.ETag)
		}
		ops := []store.Op{
			store.DeleteOp(deviceKey(id), want),
			store.DeleteOp(twinKey(id, ""), store.Any),
			store.DeleteOp(DeviceSyncKey(id), store.Any),
			store.DeleteOp(deployStateKey(id), store.Any),
		}
		orphans, err := r.orphanOps(id)
		if err != nil {
			return err
		}
		ops = append(ops, orphans...)
		prefixes := []string{"modules/" + id + "/", "twins/" + id + "/", moduleStatePrefix + id + "/"}
		for _, own := range r.owned {
			keys, more := own(id)
			for _, k := range keys {
				ops = append(ops, store.DeleteOp(k, store.Any))
			}
			prefixes = append(prefixes, more...)
		}
		if ops, err = r.deletesUnder(ops, prefixes); err != nil {
			return err
		}
		err = r.txnInParts(ops, store.CheckOp(deviceKey(id), want))
		if errors.Is(err, store.ErrConflict) && expect == store.Any {
			continue // the device changed since we read it: read it again
		}
		if err != nil {
			return storeErr(err, fmt.Sprintf("device %q", id))
		}
		return r.sweepDevice(id, prefixes)
	}
}

// txnInParts writes ops in one Txn, or where the store takes fewer ops in
// one (etcd's --max-txn-ops) in several: all but the first op in parts,
// each with check (that what the first op writes is as read), then the
// first op with the rest. A failure part way leaves what the first op
// writes as it was (a device with fewer children or modules, say), and
// nothing without it.
func (r *Registry) txnInParts(ops []store.Op, check store.Op) error {
	limit := store.TxnLimit(r.st)
	if limit < 2 || len(ops) <= limit {
		_, err := r.st.Txn(ops...)
		return err
	}
	rest := ops[1:]
	for len(rest) > limit-1 {
		if _, err := r.st.Txn(append(slices.Clone(rest[:limit-1]), check)...); err != nil {
			return err
		}
		rest = rest[limit-1:]
	}
	_, err := r.st.Txn(append([]store.Op{ops[0]}, rest...)...)
	return err
}

// deletesUnder appends to ops a delete of every record under prefixes.
func (r *Registry) deletesUnder(ops []store.Op, prefixes []string) ([]store.Op, error) {
	for _, prefix := range prefixes {
		recs, err := r.st.List(prefix)
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			ops = append(ops, store.DeleteOp(rec.Key, store.Any))
		}
	}
	return ops, nil
}

// sweepDevice deletes what was written under a deleted device's prefixes
// between their listing and the delete (a module created then, say). Once
// the device is gone nothing more is (those writes check it), so one pass
// does; none if a device of that id was created meanwhile.
func (r *Registry) sweepDevice(id string, prefixes []string) error {
	ops, err := r.deletesUnder([]store.Op{store.CheckOp(deviceKey(id), 0)}, prefixes)
	if err != nil {
		return err
	}
	if len(ops) == 1 {
		return nil
	}
	if err := r.txnInParts(ops, ops[0]); err != nil && !errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("device %q is deleted; removing what was written for it meanwhile: %w", id, err)
	}
	return nil
}

// CreateModule adds a module identity to an existing device.
func (r *Registry) CreateModule(m Module) (Module, error) {
	if err := identity.ValidateModuleIDAllowSystem(m.ModuleID); err != nil {
		return Module{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	m, b, err := r.newModule(m)
	if err != nil {
		return Module{}, err
	}
	for attempt := 1; ; attempt++ {
		// Only while the device is there: a module created as its device is
		// deleted would outlive it.
		check, err := r.IdentityCheck(m.DeviceID, "")
		if err != nil {
			return Module{}, err
		}
		// The identity with no twin: a twin left by an earlier module of that id
		// goes, with what automatic module configurations wrote there.
		v, err := r.st.Txn(
			check,
			store.PutOp(moduleKey(m.DeviceID, m.ModuleID), b, 0),
			store.DeleteOp(twinKey(m.DeviceID, m.ModuleID), store.Any),
			store.DeleteOp(moduleStateKey(m.DeviceID, m.ModuleID), store.Any),
		)
		if ce := (*store.ConflictError)(nil); errors.As(err, &ce) && ce.Key == check.Key {
			if attempt < maxAttempts {
				continue // the device changed (or went) meanwhile: again
			}
			return Module{}, fmt.Errorf("create module %s/%s: device %s kept changing: %w", m.DeviceID, m.ModuleID, m.DeviceID, err)
		}
		if errors.Is(err, store.ErrConflict) {
			return Module{}, fmt.Errorf("%w: module %s/%s", ErrExists, m.DeviceID, m.ModuleID)
		}
		if err != nil {
			return Module{}, err
		}
		m.ETag = ETagOf(v)
		return m, nil
	}
}

// newModule fills in a new module identity (keys, generation id, state) and returns it
// with its stored form.
func (r *Registry) newModule(m Module) (Module, []byte, error) {
	auth, err := fillAuth(m.Authentication, fmt.Sprintf("module %s/%s", m.DeviceID, m.ModuleID))
	if err != nil {
		return Module{}, nil, err
	}
	m.Authentication = auth
	m.GenerationID = newGenerationID()
	m.ConnectionState = "Disconnected"
	m.ConnectionStateUpdatedTime = r.now()
	b, err := marshalIdentity(m)
	return m, b, err
}

// UpdateModule replaces a module's keys and managedBy, if its etag still
// matches ifMatch ("" or "*" for any). Keys it leaves empty are kept, as in
// UpdateDevice.
func (r *Registry) UpdateModule(m Module, ifMatch string) (Module, error) {
	cur, err := r.GetModule(m.DeviceID, m.ModuleID)
	if err != nil {
		return Module{}, err
	}
	expect, err := versionOf(ifMatch)
	if err != nil {
		return Module{}, err
	}
	if expect == store.Any {
		expect, _ = versionOf(cur.ETag)
	}
	auth, err := fillAuth(keepKeys(m.Authentication, cur.Authentication), fmt.Sprintf("module %s/%s", m.DeviceID, m.ModuleID))
	if err != nil {
		return Module{}, err
	}
	m.Authentication = auth
	m.GenerationID = cur.GenerationID
	m.ConnectionState, m.ConnectionStateUpdatedTime, m.LastActivityTime = cur.ConnectionState, cur.ConnectionStateUpdatedTime, cur.LastActivityTime
	v, err := r.putModule(m, expect)
	if err != nil {
		return Module{}, storeErr(err, fmt.Sprintf("module %s/%s", m.DeviceID, m.ModuleID))
	}
	m.ETag = ETagOf(v)
	return m, nil
}

func (r *Registry) putModule(m Module, expect int64) (int64, error) {
	b, err := marshalIdentity(m)
	if err != nil {
		return 0, err
	}
	return r.st.Put(moduleKey(m.DeviceID, m.ModuleID), b, expect)
}

// GetModule returns a module identity.
func (r *Registry) GetModule(deviceID, moduleID string) (Module, error) {
	rec, err := r.getShared(moduleKey(deviceID, moduleID))
	if errors.Is(err, store.ErrNotFound) {
		if _, derr := r.GetDevice(deviceID); derr != nil {
			return Module{}, derr
		}
		return Module{}, moduleNotFound(deviceID, moduleID)
	}
	if err != nil {
		return Module{}, err
	}
	if m, ok := r.modules.get(rec.Key, rec.Version); ok {
		return cloneModule(m), nil
	}
	m, err := decodeRecord[Module](rec)
	if err != nil {
		return m, err
	}
	m.ETag = ETagOf(rec.Version)
	r.modules.put(rec.Key, rec.Version, cloneModule(m))
	return m, nil
}

// ListModules returns a device's modules, sorted by id.
func (r *Registry) ListModules(deviceID string) ([]Module, error) {
	if _, err := r.GetDevice(deviceID); err != nil {
		return nil, err
	}
	recs, err := r.st.List("modules/" + deviceID + "/")
	if err != nil {
		return nil, err
	}
	out := make([]Module, 0, len(recs))
	for _, rec := range recs {
		m, err := decodeRecord[Module](rec)
		if err != nil {
			return nil, err
		}
		m.ETag = ETagOf(rec.Version)
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ModuleID < out[j].ModuleID })
	return out, nil
}

// DeleteModule removes a module identity, its twin and its automatic
// module configuration state, all or none.
func (r *Registry) DeleteModule(deviceID, moduleID, ifMatch string) error {
	expect, err := versionOf(ifMatch)
	if err != nil {
		return err
	}
	if _, err := r.GetModule(deviceID, moduleID); err != nil {
		return err
	}
	_, err = r.st.Txn(
		store.DeleteOp(moduleKey(deviceID, moduleID), expect),
		store.DeleteOp(twinKey(deviceID, moduleID), store.Any),
		store.DeleteOp(moduleStateKey(deviceID, moduleID), store.Any),
	)
	return storeErr(err, fmt.Sprintf("module %s/%s", deviceID, moduleID))
}
