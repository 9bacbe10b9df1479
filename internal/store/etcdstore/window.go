package etcdstore

import (
	"context"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/outpost-edge/outpost/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Reading a page of a large prefix costs etcd more than the page: a range
// request walks etcd's in-memory index over every key between its two ends to
// count them (the response's Count), and etcd 3.4 (Debian 12's) also
// collects all of their revisions before it cuts them to the limit. A page of
// 1,000 at the start of 700,000 module identities took 150 – 190 ms on etcd
// 3.4, a page whose range ends just after its last key 3 – 6 ms, so that
// reading a whole prefix page by page, each to the end of the prefix, cost
// n²/2000 key visits: about a minute for 700,000 keys.
//
// So a page is read from a window [from, end) whose end is guessed to hold
// about windowFactor pages of keys, from the density of keys seen in earlier
// pages of the same prefix (a hint). A window with too few keys is followed by
// the next one, larger, until the page is full or the prefix ends; a window
// with too many costs its walk, never more than the range to the prefix's end
// that it replaces. Which windows a page is read through changes its cost,
// never its records: every key of the prefix after `from` is in exactly one
// window, and the windows of a page are read at one revision.
//
// Positions: a key's bytes after the range's prefix, as a big-endian number
// of posWidth bytes (longer keys are cut, shorter ones padded with zeros).
// Only the order of positions matters, and the cut loses only the order of
// keys equal in their first posWidth bytes, which then share a window.

// posWidth is how many bytes of a key (after the range's prefix) its position
// keeps: more than a module's key (ids of at most 128 bytes).
const posWidth = 288

// windowFactor is how many pages of keys a window is guessed to hold: a
// guess from one page's density is rough, and walking a few more keys costs
// far less than another round trip.
const windowFactor = 3

// maxHints bounds the prefixes whose density a store remembers; only
// ranges larger than a page leave a hint (e.g. devices/, modules/, twins/).
const maxHints = 64

// maxEmptyWindows is how many empty windows in a row a page reads before it
// reads to the prefix's end.
const maxEmptyWindows = 3

var posLimit = new(big.Int).Lsh(big.NewInt(1), 8*posWidth)

// position returns key's position (key without the range's prefix).
func position(key string) *big.Int {
	var b [posWidth]byte
	copy(b[:], key)
	return new(big.Int).SetBytes(b[:])
}

// keyAt returns the shortest key at position p (without the range's prefix),
// and false when p is past every key.
func keyAt(p *big.Int) (string, bool) {
	if p.Cmp(posLimit) >= 0 {
		return "", false
	}
	var b [posWidth]byte
	p.FillBytes(b[:])
	n := len(b)
	for n > 0 && b[n-1] == 0 {
		n--
	}
	return string(b[:n]), true
}

// hints are the key densities of large prefixes: for each, how many keys
// the windows read over it held, and how wide they were together. An average
// over many windows, because ids are rarely spread evenly over the byte
// space: decimal ids fill 10 of every 256 values of a byte, so that one
// window of ids is dense and the next holds the gap before the next digit.
type hints struct {
	mu      sync.Mutex
	density map[string]*density
}

type density struct {
	width *big.Int // of the windows, together
	keys  int64    // in them
}

// span returns the width that holds about n keys of prefix, or nil when
// prefix has no hint.
func (h *hints) span(prefix string, n int) *big.Int {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.density[prefix]
	if d == nil {
		return nil
	}
	s := new(big.Int).Mul(d.width, big.NewInt(int64(n)))
	s.Quo(s, big.NewInt(max(d.keys, 1)))
	if s.Sign() <= 0 {
		s.SetInt64(1)
	}
	return s
}

// add records that a window of width w held count keys of prefix.
func (h *hints) add(prefix string, w *big.Int, count int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.density[prefix]
	if d == nil {
		if h.density == nil || len(h.density) >= maxHints {
			h.density = map[string]*density{}
		}
		d = &density{width: new(big.Int)}
		h.density[prefix] = d
	}
	d.width.Add(d.width, w)
	d.keys += count
	for d.keys > hintKeys { // what the last windows saw counts most
		d.width.Rsh(d.width, 1)
		d.keys /= 2
	}
}

// hintKeys is about how many keys a hint's density is taken over.
const hintKeys = 4 * listPage

// rangeStats counts what ranges cost etcd (tests, benchmarks).
type rangeStats struct {
	requests atomic.Int64 // range requests
	walked   atomic.Int64 // keys in their ranges (their Count): what etcd walked
	read     atomic.Int64 // keys returned
}

// RangeStats are the range requests a Store made for pages of prefixes, the
// keys etcd walked for them (in the requests' ranges), and the keys returned.
func (s *Store) RangeStats() (requests, walked, read int64) {
	return s.stats.requests.Load(), s.stats.walked.Load(), s.stats.read.Load()
}

// readPage reads at most limit records (only their keys and versions with
// keysOnly) of the range prefix (full key, without the store's prefix) from
// the full etcd key from, at revision rev (0: the latest), through windows;
// see above. It returns the revision read.
func (s *Store) readPage(ctx context.Context, prefix, from string, limit int, rev int64, keysOnly bool) ([]store.Record, int64, error) {
	full := s.prefix + prefix
	prefixEnd := clientv3.GetPrefixRangeEnd(full)
	var recs []store.Record
	grow := int64(1) // 16 to the power of the windows in a row that held nothing
	for {
		end := prefixEnd
		var w *big.Int                                                       // the window's width; nil: to the prefix's end
		if grow <= 1<<(4*maxEmptyWindows) && strings.HasPrefix(from, full) { // else from is past the prefix
			if w = s.hints.span(prefix, windowFactor*(limit-len(recs))); w != nil {
				w.Mul(w, big.NewInt(grow))
				if k, ok := keyAt(new(big.Int).Add(position(from[len(full):]), w)); ok {
					end = full + k
				} else {
					w = nil
				}
			}
		}
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(int64(limit - len(recs)))}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		if keysOnly {
			opts = append(opts, clientv3.WithKeysOnly())
		}
		// etcd returns a range in key order: no WithSort, which makes etcd
		// 3.4 read the whole range before it cuts it to the limit.
		resp, err := s.cli.Get(ctx, from, opts...)
		if err != nil {
			return nil, 0, s.fail("list "+prefix, err)
		}
		s.stats.requests.Add(1)
		s.stats.walked.Add(resp.Count)
		s.stats.read.Add(int64(len(resp.Kvs)))
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			recs = append(recs, s.record(kv))
		}
		switch {
		case w != nil:
			s.hints.add(prefix, w, resp.Count)
			// Nothing in the window: before a gap wider than the density
			// said, or at the prefix's end. The next window is 16 times
			// wider; after maxEmptyWindows of them the rest of the page is
			// read to the prefix's end in one request (which walks nothing
			// at its end).
			if resp.Count == 0 {
				grow *= 16
			} else {
				grow = 1
			}
		case resp.More && len(resp.Kvs) > 1:
			// The rest of a prefix larger than a page: the page's density.
			first, last := position(string(resp.Kvs[0].Key[len(full):])), position(string(resp.Kvs[len(resp.Kvs)-1].Key[len(full):]))
			s.hints.add(prefix, new(big.Int).Sub(last, first), int64(len(resp.Kvs)-1))
		}
		if len(recs) >= limit || w == nil {
			return recs, rev, nil
		}
		from = end
	}
}
