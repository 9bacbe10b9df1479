package hub

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/query"
)

// Query paging: IoT Hub's x-ms-max-item-count request header (default and
// maximum below) and the x-ms-continuation request/response header.
const (
	DefaultQueryPageSize = 100
	MaxQueryPageSize     = 1000
)

// x-ms-item-type as IoT Hub's SDKs read it (the Java SDK checks it): whole
// twins, or rows of projections and aggregates.
const (
	itemTypeTwin = "twin"
	itemTypeRaw  = "raw"
)

// queryPos is where a page of a query starts: after the twin at Dev/Mod (a
// query without aggregates), or at row Off (an aggregated one). N is how
// many rows came before, for TOP.
type queryPos struct {
	Dev string `json:"d,omitempty"`
	Mod string `json:"m,omitempty"`
	N   int    `json:"n,omitempty"`
	Off int    `json:"o,omitempty"`
}

// runQuery runs q from pos and returns at most limit rows (0: all of them)
// and where the next page starts (nil when there is none). Rows are twin
// documents as GET /twins returns them for SELECT *, else maps of the
// projections or aggregates. Configurations' metrics call it too. It fails
// only when the twins are read from the store (querypaged.go) and it fails.
func (h *Hub) runQuery(q *query.Query, pos queryPos, limit int) (rows []any, next *queryPos, err error) {
	last := false // the page ends the query (TOP)
	if top, ok := q.Top(); ok {
		left := top - pos.N
		if left <= 0 {
			return nil, nil, nil
		}
		if limit == 0 || left <= limit {
			limit, last = left, true
		}
	}
	modules, full := q.From() == query.Modules, readsMetadata(q.Paths())
	twins := q.Star() || readsTwins(modules, q.Paths())
	if q.Aggregated() {
		agg := q.NewAggregation()
		counted := false
		if h.index.paged != nil && len(q.Paths()) == 0 { // SELECT COUNT() FROM …: every twin counts the same
			n, ok, err := h.countPaged(modules)
			if err != nil {
				return nil, nil, err
			}
			for range n {
				agg.AddGetter(noPaths{})
			}
			counted = ok
		}
		if !counted {
			if err := h.scanFrom(modules, queryPos{}, q.Where(), full, twins, func(t matched) bool {
				agg.AddGetter(t.view)
				return true
			}); err != nil {
				return nil, nil, err
			}
		}
		all := agg.Rows()
		if pos.Off >= len(all) {
			return nil, nil, nil
		}
		all = all[pos.Off:]
		if limit > 0 && len(all) > limit {
			all = all[:limit]
			if !last {
				next = &queryPos{Off: pos.Off + limit, N: pos.N + limit}
			}
		}
		rows = make([]any, len(all))
		for i, r := range all {
			rows[i] = r
		}
		return rows, next, nil
	}
	var whole []*indexEntry // SELECT *: decoded once the scan is done
	var prev *indexEntry
	n := 0
	collect := func(t matched) bool {
		if limit > 0 && n == limit { // one more matches: there is a next page
			if !last {
				next = &queryPos{Dev: prev.deviceID, Mod: prev.moduleID, N: pos.N + n}
			}
			return false
		}
		if q.Star() {
			whole = append(whole, t.e)
		} else {
			rows = append(rows, q.ProjectGetter(t.view))
		}
		prev, n = t.e, n+1
		return true
	}
	if h.index.paged != nil && limit > 0 { // a page in bounded time (querypaged.go)
		var stopped *queryPos
		stopped, err = h.scanPaged(modules, pos, q.Where(), twins, limit+1, time.Now().Add(h.index.pageTimeOrDefault()), collect)
		if stopped != nil {
			stopped.N = pos.N + n
			next = stopped
		}
	} else {
		err = h.scanFrom(modules, pos, q.Where(), full, twins, collect)
	}
	if err != nil {
		return nil, nil, err
	}
	for _, e := range whole {
		if doc := h.index.fullDoc(e); doc != nil {
			rows = append(rows, doc)
		}
	}
	return rows, next, nil
}

// readsMetadata reports whether one of paths reads $metadata, which the
// flat index does not hold.
func readsMetadata(paths [][]string) bool {
	for _, p := range paths {
		if slices.Contains(p, "$metadata") {
			return true
		}
	}
	return false
}

// eachTwin calls fn with the ids of every device twin (or every module
// twin) that matches cond (all of them when cond is nil), in order of
// device and module id, until fn returns false. fn must not call into the
// index (it runs under its read lock). Configurations' target conditions and
// metrics call it.
func (h *Hub) eachTwin(modules bool, cond *query.Condition, fn func(deviceID, moduleID string) bool) error {
	full := cond != nil && readsMetadata(cond.Paths())
	twins := cond != nil && readsTwins(modules, cond.Paths())
	return h.scanFrom(modules, queryPos{}, cond, full, twins, func(t matched) bool { return fn(t.e.deviceID, t.e.moduleID) })
}

// matched is a twin that matched a condition; view is valid during the
// callback only.
type matched struct {
	e    *indexEntry
	view *twinView
}

// scan calls fn for each of entries whose twin matches cond, under the
// index's read lock; with full, paths are read from the twins' JSON, which
// has $metadata (the flat index has not).
func (h *Hub) scan(entries []*indexEntry, cond *query.Condition, full bool, fn func(t matched) bool) {
	x := h.index
	x.mu.RLock()
	defer x.mu.RUnlock()
	view := &twinView{x: x, raw: full}
	for _, e := range entries {
		if !e.live {
			continue
		}
		view.e = e
		if cond != nil && !cond.MatchGetter(view) {
			continue
		}
		if !fn(matched{e: e, view: view}) {
			return
		}
	}
}

// queryTwins serves POST /devices/query: {"query": "SELECT …"}.
func (h *Hub) queryTwins(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireRight(p, RegistryRead, ServiceConnect); err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var spec struct {
		Query *string `json:"query"`
	}
	if err := json.Unmarshal(body, &spec); err != nil || spec.Query == nil {
		return errorf(http.StatusBadRequest, "ArgumentInvalid", `the body must be {"query": "SELECT * FROM devices WHERE …"}`)
	}
	q, err := query.Parse(*spec.Query)
	if err != nil {
		var qe *query.Error
		if errors.As(err, &qe) {
			return errorf(http.StatusBadRequest, "ArgumentInvalid", "query: %v (in %s)", err, pointAt(*spec.Query, qe.Pos))
		}
		return errorf(http.StatusBadRequest, "ArgumentInvalid", "query: %v", err)
	}
	limit := DefaultQueryPageSize
	if v := r.Header.Get("x-ms-max-item-count"); v != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 {
			return errorf(http.StatusBadRequest, "ArgumentInvalid", "header x-ms-max-item-count: %q is not a page size: give a whole number from 1 to %d", v, MaxQueryPageSize)
		}
		limit = min(n, MaxQueryPageSize)
	}
	key, err := h.cursorKey()
	if err != nil {
		return err
	}
	var pos queryPos
	if c := r.Header.Get("x-ms-continuation"); c != "" {
		if pos, err = openContinuation(key, q.String(), c); err != nil {
			return errorf(http.StatusBadRequest, "ArgumentInvalid", "header x-ms-continuation: %v: send the same query with the token of the page before it, or run the query again without the header", err)
		}
	}
	rows, next, err := h.runQuery(q, pos, limit)
	if err != nil {
		return err
	}
	if rows == nil {
		rows = []any{}
	}
	b, err := json.Marshal(rows)
	if err != nil {
		return err
	}
	itemType := itemTypeRaw
	if q.Star() {
		itemType = itemTypeTwin
	}
	w.Header().Set("x-ms-item-type", itemType)
	if next != nil {
		w.Header().Set("x-ms-continuation", sealContinuation(key, q.String(), *next))
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

// pointAt quotes the query with a marker at byte offset pos.
func pointAt(q string, pos int) string {
	pos = min(max(pos, 0), len(q))
	return strconv.Quote(q[:pos] + "⟨here⟩" + q[pos:])
}

// A continuation token is base64url(JSON of the queryPos) "." MAC, the MAC
// over the query's text and the position: a token is good only for the query
// that made it, and cannot be forged.
func sealContinuation(key []byte, q string, pos queryPos) string {
	b, _ := json.Marshal(pos)
	p := base64.RawURLEncoding.EncodeToString(b)
	return p + "." + continuationMAC(key, q, p)
}

func openContinuation(key []byte, q, token string) (queryPos, error) {
	p, mac, ok := strings.Cut(token, ".")
	var pos queryPos
	if !ok || !hmac.Equal([]byte(mac), []byte(continuationMAC(key, q, p))) {
		return pos, errors.New("not a continuation token this hub gave for this query")
	}
	b, err := base64.RawURLEncoding.DecodeString(p)
	if err == nil {
		err = json.Unmarshal(b, &pos)
	}
	if err != nil || pos.N < 0 || pos.Off < 0 {
		return queryPos{}, errors.New("damaged continuation token")
	}
	return pos, nil
}

func continuationMAC(key []byte, q, payload string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("query\x00" + q + "\x00" + payload))
	return hex.EncodeToString(m.Sum(nil)[:16])
}
