package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/registry"
	"github.com/outpost-edge/outpost/internal/store"
)

func policyKey(name string) string { return "policies/" + name }

// policy returns the shared access policy name as the store holds it now,
// so that a rotation (by this hub or by another replica on the same store)
// refuses the old keys at once, without a restart. Decoded policies are
// kept while their record's version does not change.
func (h *Hub) policy(name string) (*Policy, error) {
	rec, err := h.st.Get(policyKey(name))
	if errors.Is(err, store.ErrUnavailable) {
		return nil, err
	}
	if err != nil {
		// Not found, or not even a valid name.
		return nil, registry.ErrNotFound
	}
	h.mu.RLock()
	p, ok := h.policies[name]
	fresh := ok && h.policyVersions[name] == rec.Version
	h.mu.RUnlock()
	if fresh {
		return p, nil
	}
	p = new(Policy)
	if err := json.Unmarshal(rec.Value, p); err != nil {
		return nil, fmt.Errorf("policy record %s: %w", rec.Key, err)
	}
	h.setPolicy(p, rec.Version)
	return p, nil
}

func (h *Hub) setPolicy(p *Policy, version int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.policyVersions == nil {
		h.policyVersions = map[string]int64{}
	}
	h.policies[p.KeyName] = p
	h.policyVersions[p.KeyName] = version
}

// rotatePolicy serves POST /outpost/v1/policies/{name}/rotate: new keys for
// a shared access policy (see hubapi.PolicyRotation). Only a policy with
// registryWrite and every right of the rotated policy may rotate it.
func (h *Hub) rotatePolicy(w http.ResponseWriter, r *http.Request, p principal) error {
	name := r.PathValue("name")
	var req hubapi.PolicyRotation
	if r.ContentLength != 0 {
		if err := readJSON(r, &req); err != nil {
			return err
		}
	}
	if err := requireRight(p, RegistryWrite); err != nil {
		return err
	}
	for range 10 {
		rec, err := h.st.Get(policyKey(name))
		if err != nil {
			return errorf(http.StatusNotFound, "PolicyNotFound", "no shared access policy %q", name)
		}
		var pol Policy
		if err := json.Unmarshal(rec.Value, &pol); err != nil {
			return fmt.Errorf("policy record %s: %w", rec.Key, err)
		}
		for _, right := range pol.Rights {
			if !p.can(right) {
				return errorf(http.StatusUnauthorized, "IotHubUnauthorizedAccess", "%s lacks the %s right of policy %s, so it may not rotate its keys", p, right, name)
			}
		}
		next := pol
		if next.PrimaryKey, err = identity.NewKey(); err != nil {
			return err
		}
		if req.KeepPrevious {
			next.SecondaryKey = pol.PrimaryKey
		} else if next.SecondaryKey, err = identity.NewKey(); err != nil {
			return err
		}
		b, err := json.Marshal(next)
		if err != nil {
			return err
		}
		v, err := h.st.Put(rec.Key, b, rec.Version)
		if errors.Is(err, store.ErrConflict) {
			continue // rotated meanwhile: rotate what is there now
		}
		if err != nil {
			return fmt.Errorf("rotate policy %s: %w", name, err)
		}
		h.setPolicy(&next, v)
		if name == "owner" {
			if err := h.writeCredentials(); err != nil {
				h.log.Error("policy owner rotated, but the credentials file was not updated", "err", err)
			}
		}
		h.log.Info("policy keys rotated", "policy", name, "by", p.String(), "keepPrevious", req.KeepPrevious)
		cs := &identity.ConnectionString{HostName: h.hostName, SharedAccessKeyName: name, SharedAccessKey: next.PrimaryKey, UseInsecureHTTP: h.cfg.InsecureHTTP}
		writeJSON(w, http.StatusOK, hubapi.Policy{
			KeyName: name, PrimaryKey: next.PrimaryKey, SecondaryKey: next.SecondaryKey,
			Rights: slices.Clone(next.Rights), ConnectionString: cs.String(),
		})
		return nil
	}
	return errorf(http.StatusPreconditionFailed, "PreconditionFailed", "policy %s is being rotated by someone else: try again", name)
}
