package registry

import (
	"sync"

	"github.com/outpost-edge/outpost/internal/twin"
)

// twinCache keeps decoded twins by record key and store version, so that a
// twin written and read again (every PATCH reads the twin it then writes)
// is not decoded from its JSON each time: decoding was a sixth of the CPU
// time of a PATCH. An entry is valid only for the version it was made
// from; any other write to the record (another replica, a transaction)
// gives the record a new version and the entry is not used. Twins are
// persistent values (Clone shares their trees, which are never changed in
// place), so an entry is handed out as a Clone.
type twinCache struct {
	mu      sync.Mutex
	entries map[string]cachedTwin
	size    int // sum of the entries' JSON sizes
}

type cachedTwin struct {
	version int64
	size    int
	t       *twin.Twin
}

// twinCacheBytes bounds the JSON size of the twins held (a decoded twin
// takes a few times its JSON): enough for the twins a hub writes often,
// small beside a replica's 100 MB.
const twinCacheBytes = 4 << 20

func (c *twinCache) get(key string, version int64) *twin.Twin {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || e.version != version {
		return nil
	}
	return e.t.Clone()
}

// put keeps t as the twin of key at version; size is the length of its JSON.
func (c *twinCache) put(key string, version int64, size int, t *twin.Twin) {
	if size > twinCacheBytes/64 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[string]cachedTwin)
	}
	if old, ok := c.entries[key]; ok {
		if old.version > version {
			return // a later write's twin is already here
		}
		c.size -= old.size
		delete(c.entries, key)
	}
	for k, e := range c.entries { // map order: a random eviction
		if c.size+size <= twinCacheBytes {
			break
		}
		c.size -= e.size
		delete(c.entries, k)
	}
	c.entries[key] = cachedTwin{version: version, size: size, t: t.Clone()}
	c.size += size
}
