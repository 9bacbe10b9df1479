package hub

import (
	"context"
	"encoding/json"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

// twinIndex holds every device and module twin, decoded once, as the query
// language sees them, so that a query runs over memory instead of the store.
//
// It follows the store two ways: the registry's writes go through
// indexingStore and are applied before the write returns (a client that
// patched a twin finds the change in its next query), and a store watch on
// devices/, modules/ and twins/ applies every change, whoever made it.
// Versions make the two idempotent: a record older than what an entity
// last saw (a put or a delete) is ignored.
type twinIndex struct {
	now func() time.Time
	// connState, when set, is a device's or module's connectionState now
	// (the hub's presence: memory, not records).
	connState func(deviceID, moduleID string) string
	// paged, when set, is the store queries read page by page instead of
	// the index, which then stays empty (a replica on etcd: querypaged.go).
	paged store.Store
	// pageTime, when not 0, replaces pagedPageTime.
	pageTime time.Duration

	mu       sync.RWMutex
	entities map[string]*indexEntry // "id" or "id/mid"
	maxSeen  int64                  // highest store version applied
	sorted   [2][]*indexEntry       // live devices, live modules, by key; nil: rebuild
	paths    map[string]uint32      // every property path of every twin, numbered
	fresh    [2]flatTwin            // a twin never written (device, module), ids left out
	scratch  []leaf                 // flatten's
}

type indexEntry struct {
	deviceID, moduleID string
	// Versions of the identity and twin records last applied, or of their
	// deletion (a tombstone: the entity stays in the map).
	identVer, twinVer int64
	live              bool // the identity exists
	// What the twin shows of the device's identity (device twins; nil for
	// modules and devices without one): a pointer, so that the 60,000
	// module entries of a large fleet do not each carry 56 empty bytes.
	ident *identityFields
	twin  flatTwin
	// The automatic deployments that target the device, on its $edgeAgent
	// twin's entry, and the version of the deploy state record they are from
	// (queryconfigs.go).
	configs    map[string]hubapi.ConfigurationStatus
	configsVer int64
}

func newTwinIndex(now func() time.Time) *twinIndex {
	x := &twinIndex{now: now, entities: map[string]*indexEntry{}, paths: map[string]uint32{}}
	for i, mid := range []string{"", "m"} {
		b, _ := twin.New("d", mid, time.Time{}).MarshalJSON()
		x.fresh[i], _ = x.flatten(b)
	}
	return x
}

// indexPrefixes are the store prefixes the index follows.
var indexPrefixes = []string{"devices/", "modules/", "twins/", deployStateKind + "/", moduleStateKind + "/"}

// load watches the store, then reads what it holds; the watches run until
// ctx ends or the store closes. The index holds the store's own copies of
// the twins' JSON, not copies of them.
func (x *twinIndex) load(ctx context.Context, st store.Store) error {
	shared, _ := st.(sharedStore)
	for _, p := range indexPrefixes {
		ch := st.Watch(ctx, p)
		go func() {
			for ev := range ch {
				r := ev.Record
				if shared != nil {
					if v, ok := shared.SharedValue(r.Key, r.Version); ok {
						r.Value = v
					}
				}
				x.apply(ev.Type == store.Delete, r.Key, r.Version, r.Value)
			}
		}()
	}
	list := st.List
	if shared != nil {
		list = shared.ListShared
	}
	// An entry for each identity, made at its full size rather than grown.
	lists, n := map[string][]store.Record{}, 0
	for _, p := range []string{"devices/", "modules/"} {
		recs, err := list(p)
		if err != nil {
			return err
		}
		lists[p], n = recs, n+len(recs)
	}
	x.mu.Lock()
	entities := make(map[string]*indexEntry, len(x.entities)+n)
	maps.Copy(entities, x.entities) // what the watches applied meanwhile
	x.entities = entities
	x.mu.Unlock()
	for _, p := range indexPrefixes {
		recs, ok := lists[p]
		if !ok {
			var err error
			if recs, err = list(p); err != nil {
				return err
			}
		}
		delete(lists, p)
		if p == "twins/" {
			x.loadTwins(recs)
			continue
		}
		for _, r := range recs {
			x.apply(false, r.Key, r.Version, r.Value)
		}
	}
	return nil
}

// loadTwins applies twin records as apply does, flattening their JSON (most
// of the time the index takes to load) on every CPU: each goroutine numbers
// the paths it meets on its own, and their numbers are then made the
// index's.
func (x *twinIndex) loadTwins(recs []store.Record) {
	const minPart = 512
	parts := min(runtime.GOMAXPROCS(0), (len(recs)+minPart-1)/minPart)
	if parts <= 1 {
		for _, r := range recs {
			x.apply(false, r.Key, r.Version, r.Value)
		}
		return
	}
	type part struct {
		recs  []store.Record
		paths map[string]uint32 // the part's own numbers
		flats []flatTwin        // of recs; raw nil for JSON that is not a twin's
	}
	ps := make([]part, parts)
	var wg sync.WaitGroup
	for i := range ps {
		p := &ps[i]
		p.recs = recs[i*len(recs)/parts : (i+1)*len(recs)/parts]
		wg.Go(func() {
			p.paths, p.flats = map[string]uint32{}, make([]flatTwin, len(p.recs))
			var scratch []leaf
			for j, r := range p.recs {
				p.flats[j], _ = flatten(p.paths, &scratch, r.Value)
			}
		})
	}
	wg.Wait()
	for _, p := range ps {
		x.mu.Lock()
		ids := make([]uint32, len(p.paths))
		for path, id := range p.paths {
			n, ok := x.paths[path]
			if !ok {
				n = uint32(len(x.paths))
				x.paths[path] = n
			}
			ids[id] = n
		}
		for j, r := range p.recs {
			f := p.flats[j]
			for k := range f.leaves {
				f.leaves[k].path = ids[f.leaves[k].path]
			}
			sortLeaves(f.leaves)
			rest := strings.TrimPrefix(r.Key, "twins/")
			id, mid, _ := strings.Cut(rest, "/")
			x.setTwinLocked(x.entityLocked(rest, id, mid), r.Version, f)
		}
		x.mu.Unlock()
	}
}

// entityLocked returns the entry of rest ("id" or "id/mid"), made if need
// be; x.mu is held.
func (x *twinIndex) entityLocked(rest, id, mid string) *indexEntry {
	e := x.entities[rest]
	if e == nil {
		e = &indexEntry{deviceID: id, moduleID: mid}
		x.entities[rest] = e
	}
	return e
}

// setTwinLocked records twin f (none: raw nil, for a deletion or JSON that
// is not a twin's) of e at store version; x.mu is held.
func (x *twinIndex) setTwinLocked(e *indexEntry, version int64, f flatTwin) {
	x.maxSeen = max(x.maxSeen, version)
	if version > e.twinVer {
		e.twinVer, e.twin = version, f
	}
}

// apply records a put (or with del, a deletion) of the store record key at
// version.
func (x *twinIndex) apply(del bool, key string, version int64, value []byte) {
	kind, rest, ok := strings.Cut(key, "/")
	if !ok {
		return
	}
	switch kind {
	case deployStateKind:
		x.applyDeployState(del, rest, version, value)
		return
	case moduleStateKind:
		x.applyModuleState(del, rest, version, value)
		return
	}
	id, mid, _ := strings.Cut(rest, "/")
	if kind == "devices" && mid != "" || kind == "modules" && mid == "" {
		return
	}
	var ident *identityFields
	switch {
	case kind != "twins" && kind != "devices" && kind != "modules":
		return
	case kind == "devices" && !del:
		// Read outside the lock. A module's twin shows nothing of its
		// identity (withIdentity, twinView): of a module, only its
		// existence counts.
		f := readIdentity(value)
		ident = &f
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.maxSeen = max(x.maxSeen, version)
	e := x.entityLocked(rest, id, mid)
	wasLive := e.live
	switch kind {
	case "twins":
		if version <= e.twinVer {
			return
		}
		var f flatTwin
		if !del {
			f, _ = x.flatten(value)
		}
		x.setTwinLocked(e, version, f)
	default:
		if version <= e.identVer {
			return
		}
		e.identVer = version
		e.live = !del
		e.ident = ident
	}
	if e.live != wasLive {
		x.sorted[collectionOf(e.moduleID != "")] = nil
	}
}

// deleted records the deletion of key by a write that made (or saw) no
// version above what the index has seen.
func (x *twinIndex) deleted(key string, version int64) {
	x.mu.RLock()
	version = max(version, x.maxSeen)
	x.mu.RUnlock()
	x.apply(true, key, version, nil)
}

// identity is e.ident, or no fields when it has none.
func (e *indexEntry) identity() *identityFields {
	if e.ident == nil {
		return &noIdentity
	}
	return e.ident
}

var noIdentity identityFields

// identityFields are what twins show of their device or module identity.
type identityFields struct {
	status  string
	iotEdge *bool // capabilities.iotEdge
	// deviceScope, and parentScopes' one scope when it has one
	scope, parentScope string
}

// readIdentity reads them from an identity record without decoding all of
// it (the index reads every device identity when the hub starts), in one
// pass over its members.
func readIdentity(b []byte) identityFields {
	var m [6][]byte
	topMembers(b, []string{"status", "capabilities", "deviceScope", "parentScopes", "deviceId", "generationId"}, m[:])
	status, caps, scope, parents, id, gen := m[0], m[1], m[2], m[3], m[4], m[5]
	var f identityFields
	if status != nil {
		s, _ := decodeValue(status)
		f.status, _ = s.(string)
		f.status = strings.Clone(f.status) // not the record's bytes: a short string
	}
	if v, ok := lookupRaw(caps, "iotEdge"); ok {
		if e, _ := decodeValue(v); e == true || e == false {
			edge := e == true
			f.iotEdge = &edge
		}
	}
	f.scope, f.parentScope = rawString(scope, ""), rawString(parents, "[0]")
	if f.scope == "" && (f.iotEdge == nil || *f.iotEdge) { // written before scopes were kept
		if id, gen := rawString(id, ""), rawString(gen, ""); id != "" && gen != "" {
			f.scope = hubapi.EdgeScope(id, gen)
		}
	}
	return f
}

// topMembers sets vals[i] to the JSON of member names[i] of the object b
// (the first, as lookupRaw finds it), nil when b has none.
func topMembers(b []byte, names []string, vals [][]byte) {
	f := flattener{raw: b}
	if f.skipSpace() >= len(b) || b[f.i] != '{' {
		return
	}
	f.i++
	if f.skipSpace() < len(b) && b[f.i] == '}' {
		return
	}
	for {
		f.skipSpace()
		ks := f.i
		if !f.str() {
			return
		}
		k, ok := keyBytes(b[ks:f.i])
		if !ok || f.skipSpace() >= len(b) || b[f.i] != ':' {
			return
		}
		f.i++
		start := f.skipSpace()
		if !f.value(false) {
			return
		}
		for i, name := range names {
			if vals[i] == nil && string(k) == name {
				vals[i] = b[start:f.i]
			}
		}
		if f.skipSpace() >= len(b) {
			return
		}
		f.i++
		if b[f.i-1] != ',' {
			return
		}
	}
}

// rawString returns the string at path in the JSON object b, or "".
func rawString(b []byte, path string) string {
	v, ok := lookupRaw(b, path)
	if !ok {
		return ""
	}
	s, _ := decodeValue(v)
	str, _ := s.(string)
	return strings.Clone(str)
}

func freshTwin(deviceID, moduleID string, now time.Time) map[string]any {
	var t map[string]any
	b, _ := twin.New(deviceID, moduleID, now).MarshalJSON()
	_ = json.Unmarshal(b, &t)
	return t
}

// withIdentity returns twin t with what its identity says of itself: its
// connectionState (when known), and for a device twin the device's status
// and capabilities.
func withIdentity(t map[string]any, moduleID string, ident *identityFields, connState string) map[string]any {
	doc := make(map[string]any, len(t)+3)
	for k, v := range t {
		doc[k] = v
	}
	if connState != "" {
		doc["connectionState"] = connState
	}
	if moduleID != "" || ident == nil {
		return doc
	}
	if ident.status != "" {
		doc["status"] = ident.status
	}
	if ident.iotEdge != nil {
		doc["capabilities"] = map[string]any{"iotEdge": *ident.iotEdge}
	}
	if ident.scope != "" {
		doc["deviceScope"] = ident.scope
	}
	if ident.parentScope != "" {
		doc["parentScopes"] = []any{ident.parentScope}
	}
	return doc
}

// fullDoc returns e's twin as GET /twins returns it, $metadata and all,
// with the device's status and capabilities; nil if e no longer exists.
func (x *twinIndex) fullDoc(e *indexEntry) map[string]any {
	x.mu.RLock()
	live, ident, raw, cfgs := e.live, e.ident, e.twin.raw, e.configs
	x.mu.RUnlock()
	if !live {
		return nil
	}
	var t map[string]any
	if raw == nil || json.Unmarshal(raw, &t) != nil {
		t = freshTwin(e.deviceID, e.moduleID, x.now())
	}
	doc := withIdentity(t, e.moduleID, ident, x.connectionState(e))
	if cfgs != nil {
		doc["configurations"] = configurationsDoc(cfgs)
	}
	return doc
}

// connectionState is e's connectionState now, "" when the index has no
// presence to ask.
func (x *twinIndex) connectionState(e *indexEntry) string {
	if x.connState == nil {
		return ""
	}
	return x.connState(e.deviceID, e.moduleID)
}

// snapshot returns the live entities of one collection (modules or not),
// sorted by device id then module id. The slice is shared: do not change it.
func (x *twinIndex) snapshot(modules bool) []*indexEntry {
	i := collectionOf(modules)
	x.mu.RLock()
	s := x.sorted[i]
	x.mu.RUnlock()
	if s != nil {
		return s
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.sorted[i] != nil {
		return x.sorted[i]
	}
	s = make([]*indexEntry, 0, len(x.entities))
	for _, e := range x.entities {
		if e.live && (e.moduleID != "") == modules {
			s = append(s, e)
		}
	}
	slices.SortFunc(s, func(a, b *indexEntry) int {
		if c := strings.Compare(a.deviceID, b.deviceID); c != 0 {
			return c
		}
		return strings.Compare(a.moduleID, b.moduleID)
	})
	x.sorted[i] = s
	return s
}

func collectionOf(modules bool) int {
	if modules {
		return 1
	}
	return 0
}

// indexingStore is the store the registry writes through: each write that
// succeeds is applied to the index before it returns.
type indexingStore struct {
	store.Store
	idx *twinIndex
}

// sharedStore is a store that lends its own copies of values (the file
// store), so that the index does not hold them twice.
type sharedStore interface {
	ListShared(prefix string) ([]store.Record, error)
	SharedValue(key string, version int64) ([]byte, bool)
}

// GetShared is the underlying store's GetShared, or its Get if it has none.
func (s indexingStore) GetShared(key string) (store.Record, error) { return getShared(s.Store, key) }

// getShared is st's GetShared (the file store lends its own copy of a
// record, which the registry reads identities and twins from), or its Get if
// it has none: what the hub's store wrappers give the registry.
func getShared(st store.Store, key string) (store.Record, error) {
	if g, ok := st.(interface {
		GetShared(key string) (store.Record, error)
	}); ok {
		return g.GetShared(key)
	}
	return st.Get(key)
}

func (s indexingStore) Put(key string, value []byte, expect int64) (int64, error) {
	v, err := s.Store.Put(key, value, expect)
	if err == nil {
		s.idx.apply(false, key, v, value)
	}
	return v, err
}

func (s indexingStore) Delete(key string, expect int64) error {
	err := s.Store.Delete(key, expect)
	if err == nil {
		s.idx.deleted(key, 0)
	}
	return err
}

// TxnLimit is the underlying store's (store.TxnLimiter).
func (s indexingStore) TxnLimit() int { return store.TxnLimit(s.Store) }

func (s indexingStore) Txn(ops ...store.Op) (int64, error) {
	v, err := s.Store.Txn(ops...)
	if err == nil {
		for _, op := range ops {
			if op.Check {
				continue
			}
			if op.Delete {
				s.idx.deleted(op.Key, v)
			} else if v != 0 {
				s.idx.apply(false, op.Key, v, op.Value)
			}
		}
	}
	return v, err
}
