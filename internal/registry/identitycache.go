package registry

import (
	"slices"
	"sync"
)

// identityCache keeps decoded identities (devices, modules) by record key
// and store version, as twinCache keeps twins: every twin answer and every
// request with a module's token reads the identity, and decoding its JSON
// was a twentieth of a PATCH's CPU time. An entry serves only the version
// it was decoded from, so any other write (another replica, a transaction)
// is read from the store. Entries are handed out as deep copies.
type identityCache[T any] struct {
	mu      sync.Mutex
	entries map[string]cachedIdentity[T]
}

type cachedIdentity[T any] struct {
	version int64
	v       T
}

// identityCacheEntries bounds each cache: an identity takes well under a
// kilobyte, so a few megabytes at most.
const identityCacheEntries = 4096

func (c *identityCache[T]) get(key string, version int64) (T, bool) {
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if !ok || e.version != version {
		var zero T
		return zero, false
	}
	return e.v, true
}

// put keeps v, which the caller no longer changes, as key's identity at version.
func (c *identityCache[T]) put(key string, version int64, v T) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[string]cachedIdentity[T])
	}
	if old, ok := c.entries[key]; ok && old.version > version {
		return // a later write's identity is already here
	}
	for k := range c.entries { // map order: a random eviction
		if len(c.entries) < identityCacheEntries {
			break
		}
		delete(c.entries, k)
	}
	c.entries[key] = cachedIdentity[T]{version: version, v: v}
}

// cloneDevice and cloneModule copy what a caller could change through a
// pointer or a slice, so that the kept identity stays as decoded.
func cloneDevice(d Device) Device {
	d.Authentication = cloneAuth(d.Authentication)
	if d.Capabilities != nil {
		c := *d.Capabilities
		d.Capabilities = &c
	}
	d.ParentScopes = slices.Clone(d.ParentScopes)
	return d
}

func cloneModule(m Module) Module {
	m.Authentication = cloneAuth(m.Authentication)
	return m
}

func cloneAuth(a *Authentication) *Authentication {
	if a == nil {
		return nil
	}
	c := *a
	if a.SymmetricKey != nil {
		k := *a.SymmetricKey
		c.SymmetricKey = &k
	}
	return &c
}
