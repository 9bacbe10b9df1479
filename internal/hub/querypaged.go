package hub

import (
	"errors"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/query"
	"github.com/outpost-edge/outpost/internal/store"
)

// On a store shared by replicas (etcd), a replica holds no copy of the
// registry: the twin index is not loaded, and a query reads its collection
// from the store a page at a time, evaluating each twin as the page
// arrives, so that a replica's memory does not grow with the fleet. Each
// page is a range of identity records, then their twins: for module twins a
// range of twins/ beside it (twinCursor), for device twins one transaction
// of gets (multiGetter), which also gets the deploy state of $edgeAgent
// twins. Twins are read in store key order (by "ID" or "ID/MODULE"), the
// order continuation tokens resume in.
//
// On the file store the index stays: the records are already in memory, and
// a query over the decoded index is faster than reading them again.

// pagedScanPage is how many identities a paged scan reads at a time.
const pagedScanPage = 1000

// pagedQueryTime is how much longer than other requests a query may take
// when it reads the store page by page: a count over 100,000 devices on a
// busy etcd takes about a minute.
const pagedQueryTime = 5 * time.Minute

// queryTime is the time a query gets on top of the write timeout.
func (h *Hub) queryTime() time.Duration {
	if h.index != nil && h.index.paged != nil {
		return pagedQueryTime
	}
	return 0
}

// pagedPageTime is how long a page of a query (without aggregates) may
// scan the store before it is answered with what matched so far and a
// continuation token; twinIndex.pageTime overrides it (tests).
const pagedPageTime = 10 * time.Second

func (x *twinIndex) pageTimeOrDefault() time.Duration {
	if x.pageTime != 0 {
		return x.pageTime
	}
	return pagedPageTime
}

// multiGetter is a store that gets many keys in one round trip (etcd).
type multiGetter interface {
	// GetMany returns the records of keys that exist, in no given order.
	GetMany(keys []string) ([]store.Record, error)
}

// getMany gets the records of keys from st, in one round trip when st can.
func getMany(st store.Store, keys []string) (map[string]store.Record, error) {
	if len(keys) == 0 {
		return map[string]store.Record{}, nil
	}
	var recs []store.Record
	if mg, ok := st.(multiGetter); ok {
		var err error
		if recs, err = mg.GetMany(keys); err != nil {
			return nil, err
		}
	} else {
		for _, k := range keys {
			r, err := st.Get(k)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			recs = append(recs, r)
		}
	}
	m := make(map[string]store.Record, len(recs))
	for _, r := range recs {
		m[r.Key] = r
	}
	return m, nil
}

// scanFrom calls fn for each twin of one collection (modules or not) after
// pos (from the first with a zero pos) that matches cond, in order, until fn
// returns false. With full, paths are read from the twins' JSON ($metadata
// too). Without twins, neither cond nor fn reads more of a twin than its
// identity holds (readsTwins), so that the store's twins need not be read.
// On the index fn runs under its read lock.
func (h *Hub) scanFrom(modules bool, pos queryPos, cond *query.Condition, full, twins bool, fn func(t matched) bool) error {
	if h.index.paged != nil {
		_, err := h.scanPaged(modules, pos, cond, twins, 0, time.Time{}, fn)
		return err
	}
	entries := h.index.snapshot(modules)
	if pos != (queryPos{}) {
		entries = entries[sort.Search(len(entries), func(i int) bool {
			e := entries[i]
			return e.deviceID > pos.Dev || e.deviceID == pos.Dev && e.moduleID > pos.Mod
		}):]
	}
	h.scan(entries, cond, full, fn)
	return nil
}

// scanPaged is scanFrom on the store: twins are read from their JSON. With
// a deadline, it stops after the first page that ends past it and returns
// the position after that page (nil when it went to the end or fn stopped
// it), so that a page of a query over a large fleet is answered in bounded
// time, with a continuation token, however few twins match.
//
// want, when not 0, is how many twins fn takes at most: the first page reads
// that many identities (a page of a query of 100 rows reads 101, not
// pagedScanPage), and each next page twice as many, up to pagedScanPage.
func (h *Hub) scanPaged(modules bool, pos queryPos, cond *query.Condition, twins bool, want int, deadline time.Time, fn func(t matched) bool) (*queryPos, error) {
	x := h.index
	prefix := "devices/"
	if modules {
		prefix = "modules/"
	}
	after := ""
	if pos != (queryPos{}) {
		after = prefix + pos.Dev
		if modules {
			after += "/" + pos.Mod
		}
	}
	var cursor *twinCursor
	if modules && twins { // module twins are read as a range beside their identities
		cursor = &twinCursor{st: x.paged}
		if after != "" {
			cursor.after = "twins/" + strings.TrimPrefix(after, prefix)
		}
	}
	// A module's identity holds nothing a query reads (its ids are in its
	// key): its record's value is not read where the store can leave it out.
	readPage := x.paged.Range
	if kr, ok := x.paged.(keyRanger); ok && modules {
		readPage = kr.RangeKeys
	}
	view := &twinView{x: x, raw: true}
	page := pagedScanPage
	if want > 0 {
		page = min(pagedScanPage, max(want, 16))
	}
	for ; ; page = min(2*page, pagedScanPage) {
		recs, err := readPage(prefix, after, page)
		if err != nil {
			return nil, err
		}
		entries, err := x.pageEntries(prefix, modules, recs, twins, cursor)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			view.e = e
			if cond != nil && !cond.MatchGetter(view) {
				continue
			}
			if !fn(matched{e: e, view: view}) {
				return nil, nil
			}
		}
		if len(recs) < page {
			return nil, nil
		}
		after = recs[len(recs)-1].Key
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			dev, mod, _ := strings.Cut(strings.TrimPrefix(after, prefix), "/")
			return &queryPos{Dev: dev, Mod: mod}, nil
		}
	}
}

// keyRanger is a store that reads pages of keys and versions without the
// records' values (etcd).
type keyRanger interface {
	RangeKeys(prefix, after string, limit int) ([]store.Record, error)
}

// counter is a store that counts the records under a prefix without
// reading them (etcd).
type counter interface {
	Count(prefix string) (int64, error)
}

// identityPaths are the paths of a twin that its identity and the hub's
// presence answer (twinView.Get), by collection (devices, modules): a query
// that reads no others needs no twin records.
var identityPaths = [2][]string{
	{"deviceId", "moduleId", "connectionState", "status", "capabilities", "capabilities.iotEdge", "deviceScope", "parentScopes"},
	{"deviceId", "moduleId", "connectionState"},
}

// readsTwins reports whether a query over devices (or modules) that reads
// paths needs the twin records, not only the identities.
func readsTwins(modules bool, paths [][]string) bool {
	for _, p := range paths {
		if !slices.Contains(identityPaths[collectionOf(modules)], strings.Join(p, ".")) {
			return true
		}
	}
	return false
}

// countPaged returns how many twins the collection (modules or not) has,
// when the store counts them without reading them (ok false otherwise).
func (h *Hub) countPaged(modules bool) (n int64, ok bool, err error) {
	c, isCounter := h.index.paged.(counter)
	if !isCounter {
		return 0, false, nil
	}
	prefix := "devices/"
	if modules {
		prefix = "modules/"
	}
	n, err = c.Count(prefix)
	return n, err == nil, err
}

// noPaths is the twin of a query that reads no paths.
type noPaths struct{}

func (noPaths) Get(*query.Path) (any, bool) { return nil, false }

// twinCursor reads the twins/ records in key order, a range at a time, for
// a scan over module identities (whose keys sort as their twins' do): one
// range request costs etcd far less than a transaction of as many gets.
type twinCursor struct {
	st    store.Store
	after string         // the last key read
	buf   []store.Record // read, not yet taken
	done  bool           // no records after buf
}

// rangeThrougher is a store that reads the keys between two given keys
// (etcd: a range with both ends, whose cost is the keys read).
type rangeThrougher interface {
	RangeThrough(after, last string) ([]store.Record, error)
}

// upTo takes the records with keys up to twins/last.
func (c *twinCursor) upTo(last string) ([]store.Record, error) {
	end := "twins/" + last
	if rt, ok := c.st.(rangeThrougher); ok {
		from := c.after
		if from == "" {
			from = "twins/"
		}
		recs, err := rt.RangeThrough(from, end)
		c.after = end
		return recs, err
	}
	var out []store.Record
	for {
		i := 0
		for i < len(c.buf) && c.buf[i].Key <= end {
			i++
		}
		out, c.buf = append(out, c.buf[:i]...), c.buf[i:]
		if len(c.buf) > 0 || c.done {
			return out, nil
		}
		const n = 2 * pagedScanPage
		recs, err := c.st.Range("twins/", c.after, n)
		if err != nil {
			return nil, err
		}
		c.done = len(recs) < n
		if len(recs) > 0 {
			c.after = recs[len(recs)-1].Key
		}
		c.buf = recs
	}
}

// pageEntries makes the entries of a page of identity records under prefix,
// with twins their twins (from cursor, when not nil) and configurations read
// from the store.
func (x *twinIndex) pageEntries(prefix string, modules bool, recs []store.Record, twins bool, cursor *twinCursor) ([]*indexEntry, error) {
	entries := make([]*indexEntry, 0, len(recs))
	keys := make([]string, 0, len(recs))
	for _, r := range recs {
		rest := strings.TrimPrefix(r.Key, prefix)
		id, mid, isModule := strings.Cut(rest, "/")
		if isModule != modules {
			continue
		}
		e := &indexEntry{deviceID: id, moduleID: mid, live: true, identVer: r.Version}
		if !modules {
			f := readIdentity(r.Value)
			e.ident = &f
		}
		entries = append(entries, e)
		if !twins {
			continue
		}
		if cursor == nil {
			keys = append(keys, "twins/"+rest)
		}
		keys = append(keys, configsKey(id, mid))
	}
	if !twins {
		return entries, nil
	}
	got, err := getMany(x.paged, keys)
	if err != nil {
		return nil, err
	}
	if cursor != nil && len(recs) > 0 {
		trecs, err := cursor.upTo(strings.TrimPrefix(recs[len(recs)-1].Key, prefix))
		if err != nil {
			return nil, err
		}
		for _, r := range trecs {
			got[r.Key] = r
		}
	}
	for _, e := range entries {
		key := "twins/" + e.deviceID
		if e.moduleID != "" {
			key += "/" + e.moduleID
		}
		if r, ok := got[key]; ok {
			e.twin, e.twinVer = flatTwin{raw: r.Value}, r.Version
		}
		if r, ok := got[configsKey(e.deviceID, e.moduleID)]; ok {
			e.configs, e.configsVer = decodeConfigs(e.moduleID, r.Value), r.Version
		}
	}
	return entries, nil
}
