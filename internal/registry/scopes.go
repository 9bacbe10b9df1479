package registry

import (
	"fmt"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/store"
)

// maxNesting bounds how deep edge devices may nest under one another (IoT
// Edge supports five layers); it also stops a walk up a chain of parents.
const maxNesting = 5

// ownScope gives an edge device its scope, which the hub derives from its id
// and generation id (records written before scopes were kept have none).
func ownScope(d *Device) {
	if IsEdge(*d) && d.DeviceScope == "" && d.GenerationID != "" {
		d.DeviceScope = hubapi.EdgeScope(d.DeviceID, d.GenerationID)
	}
}

// setScopes fills d's deviceScope and parentScopes for a create (cur nil) or
// an update of cur, as IoT Hub does:
//
//   - an edge device's deviceScope is its own, set by the hub; its parent (an
//     edge device above it) is parentScopes[0]; parentScopes nil keeps the
//     parent it has;
//   - a leaf device's parent is its deviceScope, an edge device's scope, and
//     parentScopes repeats it; with neither given the parent is kept, and an
//     empty parentScopes with no deviceScope removes it.
//
// A parent must be an existing edge device, given by its current scope; a
// device has at most one.
func (r *Registry) setScopes(d *Device, cur *Device) error {
	if len(d.ParentScopes) > 1 {
		return fmt.Errorf("%w: device %q: parentScopes has %d scopes; a device has at most one parent", ErrInvalid, d.DeviceID, len(d.ParentScopes))
	}
	keep := func() {
		if cur != nil {
			d.DeviceScope, d.ParentScopes = cur.DeviceScope, cur.ParentScopes
		} else {
			d.DeviceScope, d.ParentScopes = "", nil
		}
	}
	if IsEdge(*d) {
		own := hubapi.EdgeScope(d.DeviceID, d.GenerationID)
		if d.DeviceScope != "" && d.DeviceScope != own {
			return fmt.Errorf("%w: device %q: an edge device's deviceScope is its own, %s, set by the hub; give it a parent with parentScopes (outpost device set-parent)", ErrInvalid, d.DeviceID, own)
		}
		parents := d.ParentScopes
		if parents == nil {
			if cur != nil {
				parents = cur.ParentScopes
			}
		}
		d.DeviceScope, d.ParentScopes = own, nil
		if len(parents) == 1 {
			if err := r.checkParent(d.DeviceID, parents[0]); err != nil {
				return err
			}
			d.ParentScopes = parents
		}
		return nil
	}
	var parent string
	switch {
	case cur != nil && d.DeviceScope != "" && d.DeviceScope == cur.DeviceScope:
		keep() // unchanged, even if its parent has gone since
		return nil
	case d.DeviceScope != "":
		parent = d.DeviceScope
	case d.ParentScopes == nil:
		keep()
		return nil
	case len(d.ParentScopes) == 1:
		parent = d.ParentScopes[0]
	default: // parentScopes [] and no deviceScope: no parent
		d.DeviceScope, d.ParentScopes = "", nil
		return nil
	}
	if err := r.checkParent(d.DeviceID, parent); err != nil {
		return err
	}
	d.DeviceScope, d.ParentScopes = parent, []string{parent}
	return nil
}

// checkParent checks that scope is the scope of an edge device that may be
// the parent of device id: one that exists now (not an earlier device of the
// same id), is not id itself and has not id above it.
func (r *Registry) checkParent(id, scope string) error {
	pid, ok := hubapi.ScopeDeviceID(scope)
	if !ok {
		return fmt.Errorf("%w: device %q: scope %q is not an edge device's scope (ms-azure-iot-edge://ID-GENERATION); `outpost device show EDGE` prints an edge device's deviceScope", ErrInvalid, id, scope)
	}
	for depth := 0; ; depth++ {
		if pid == id {
			return fmt.Errorf("%w: device %q: it cannot be its own parent or sit under itself (scope %q)", ErrInvalid, id, scope)
		}
		if depth == maxNesting {
			return fmt.Errorf("%w: device %q: its parent %q would put it more than %d edge devices deep", ErrInvalid, id, pid, maxNesting)
		}
		p, err := r.GetDevice(pid)
		if err != nil {
			return fmt.Errorf("%w: device %q: parent scope %q names device %q, which does not exist", ErrInvalid, id, scope, pid)
		}
		if !IsEdge(p) {
			return fmt.Errorf("%w: device %q: %q is a leaf device; only an IoT Edge device (capabilities.iotEdge) can be a parent", ErrInvalid, id, pid)
		}
		if depth == 0 && p.DeviceScope != scope {
			return fmt.Errorf("%w: device %q: scope %q is of an earlier device %q, deleted and created again since; its scope now is %q", ErrInvalid, id, scope, pid, p.DeviceScope)
		}
		if len(p.ParentScopes) == 0 {
			return nil
		}
		pid, _ = hubapi.ScopeDeviceID(p.ParentScopes[0])
	}
}

// Children returns the devices whose parent is the device id: leaf devices
// and edge devices nested under it. It reads every device identity.
func (r *Registry) Children(id string) ([]Device, error) {
	all, _, err := r.ListDevices("", 0)
	if err != nil {
		return nil, err
	}
	var out []Device
	for _, d := range all {
		if d.ParentID() == id {
			out = append(out, d)
		}
	}
	return out, nil
}

// orphanOps returns the operations that remove the device id as the parent
// of its children, for the transaction that deletes it.
func (r *Registry) orphanOps(id string) ([]store.Op, error) {
	children, err := r.Children(id)
	if err != nil {
		return nil, err
	}
	var ops []store.Op
	for _, c := range children {
		want, _ := versionOf(c.ETag)
		if IsEdge(c) {
			c.ParentScopes = nil
		} else {
			c.DeviceScope, c.ParentScopes = "", nil
		}
		b, err := marshalIdentity(c)
		if err != nil {
			return nil, err
		}
		ops = append(ops, store.PutOp(deviceKey(c.DeviceID), b, want))
	}
	return ops, nil
}
