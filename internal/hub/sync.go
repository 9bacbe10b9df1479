package hub

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/registry"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/twin"
)

const syncPrefix = hubapi.Prefix

// deviceAccess allows only the device itself (or a policy with
// serviceConnect, for tools and tests).
func deviceAccess(p principal, id string) error {
	if p.isDevice(id) || p.can(ServiceConnect) {
		return nil
	}
	return forbidden(p, "sync device "+id)
}

// sync serves GET …/devices/{id}/sync?cursor=C&wait=D.
func (h *Hub) sync(w http.ResponseWriter, r *http.Request, p principal) error {
	id := r.PathValue("id")
	if err := deviceAccess(p, id); err != nil {
		return err
	}
	q := r.URL.Query()
	cursor := q.Get("cursor")
	var wait time.Duration
	if s := q.Get("wait"); s != "" {
		var err error
		if wait, err = time.ParseDuration(s); err != nil || wait < 0 {
			return errorf(http.StatusBadRequest, "ArgumentInvalid", "wait=%q: want a duration such as 30s", s)
		}
		wait = min(wait, hubapi.MaxWait)
	}
	h.presence.begin(id)
	defer h.presence.end(id)
	var timeout <-chan time.Time
	deliver := p.isDevice(id) // method calls go to the device itself, not to a tool watching its twins
	for {
		changed := h.notify.wait(id) // before reading, so no change is missed
		var calls <-chan struct{}
		if deliver {
			calls = h.methodCalls().ready(id)
		}
		state, err := h.deviceState(id, cursor, deliver)
		if err != nil {
			return err
		}
		if deliver {
			state.Methods = h.methodCalls().take(id)
		}
		// With the cursor held back by a write under way (see writeOrder), an
		// answer with twins can keep the cursor it was asked with: the
		// device still gets them now (and not again, see sent).
		news := deliver && len(state.Twins)+len(state.ChildTwins) > 0
		if wait == 0 || cursor == "" || state.Cursor != cursor || len(state.Methods) > 0 || news {
			writeJSON(w, http.StatusOK, state)
			return nil
		}
		if timeout == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
			h.longPolls.Add(1)
			defer h.longPolls.Add(-1)
		}
		select {
		case <-changed:
		case <-calls:
		case <-timeout:
			writeJSON(w, http.StatusOK, state)
			return nil
		case <-r.Context().Done():
			// The client left, or the hub is shutting down: never answer
			// 200 without a state, which a device could read as "no modules".
			return errorf(http.StatusServiceUnavailable, "ServerBusy", "the hub is shutting down: sync again")
		}
	}
}

// A cursor is what a device last learnt, "REV.SUM.MAC": REV is the highest
// version among the device's records then, SUM a hash of its identity and
// modules (a change of either changes the cursor), and MAC binds both to the
// device and its generation with the hub's cursor key. The hub trusts a
// cursor for an incremental sync only when the MAC is its own and REV is not
// above what it holds now; any other cursor (forged, from a device identity
// created anew, from before a restore of the hub's data) gets a full sync.

// cursorKeyRecord holds the hub's key for cursor MACs.
const cursorKeyRecord = "hub/cursor-key"

// cursorKey returns the key for cursor MACs, made on first use.
func (h *Hub) cursorKey() ([]byte, error) {
	h.ckMu.Lock()
	defer h.ckMu.Unlock()
	if h.ck != nil {
		return h.ck, nil
	}
	for {
		rec, err := h.st.Get(cursorKeyRecord)
		if err == nil {
			var k struct{ Key []byte }
			if err := json.Unmarshal(rec.Value, &k); err != nil || len(k.Key) < 16 {
				return nil, fmt.Errorf("record %s is damaged: delete it (devices then sync in full once)", cursorKeyRecord)
			}
			h.ck = k.Key
			return h.ck, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		k := make([]byte, 32)
		_, _ = rand.Read(k)
		b, _ := json.Marshal(struct{ Key []byte }{k})
		if _, err := h.st.Put(cursorKeyRecord, b, 0); err != nil && !errors.Is(err, store.ErrConflict) {
			return nil, fmt.Errorf("make the sync cursor key: %w", err)
		} // on a conflict another replica made it first: read theirs
	}
}

// cursorMAC is the MAC of a cursor's REV.SUM for one generation of a device.
func cursorMAC(key []byte, deviceID, generationID, revSum string) string {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s\x00%s\x00%s", deviceID, generationID, revSum)
	return hex.EncodeToString(m.Sum(nil)[:12])
}

// trustedRevision returns the revision of a cursor the hub gave device d,
// or 0 (a full sync) for one it cannot vouch for.
func trustedRevision(key []byte, d *registry.Device, cursor string) int64 {
	revSum, mac, ok := cutLast(cursor, ".")
	if !ok || !hmac.Equal([]byte(mac), []byte(cursorMAC(key, d.DeviceID, d.GenerationID, revSum))) {
		return 0
	}
	rev, _, _ := strings.Cut(revSum, ".")
	n, err := strconv.ParseInt(rev, 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// deviceState reads what device id should know: the module twins written
// after the cursor's revision, or all of them when the cursor is "" or one
// the hub cannot vouch for.
//
// For the device itself (self), it remembers the version of each twin it
// sends (see echoed).
func (h *Hub) deviceState(id, cursor string, self bool) (*hubapi.Sync, error) {
	dev, err := h.st.Get("devices/" + id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("%w: device %q", registry.ErrNotFound, id)
		}
		return nil, err
	}
	var d registry.Device
	if err := json.Unmarshal(dev.Value, &d); err != nil {
		return nil, err
	}
	key, err := h.cursorKey()
	if err != nil {
		return nil, err
	}
	since := int64(0)
	if cursor != "" {
		since = trustedRevision(key, &d, cursor)
	}
	since = h.notCompacted(id, since)
	mods, twins, sr, kids, err := h.readDevice(id, d.GenerationID)
	if err != nil {
		return nil, err
	}

	s := &hubapi.Sync{
		Device:   hubapi.SyncDevice{DeviceID: d.DeviceID, GenerationID: d.GenerationID, Status: d.Status, ETag: registry.ETagOf(dev.Version)},
		Modules:  make([]hubapi.SyncModule, 0, len(mods)),
		Twins:    []json.RawMessage{},
		Reported: sr,
	}
	rev := dev.Version
	sum := fnv.New64a()
	fmt.Fprintf(sum, "%s\x00%d\x00", d.Status, dev.Version)
	for _, rec := range mods {
		var m registry.Module
		if err := json.Unmarshal(rec.Value, &m); err != nil {
			return nil, err
		}
		rev = max(rev, rec.Version)
		fmt.Fprintf(sum, "%s\x00%d\x00", m.ModuleID, rec.Version)
		hm := hubapi.SyncModule{ModuleID: m.ModuleID, GenerationID: m.GenerationID, ManagedBy: m.ManagedBy, ETag: registry.ETagOf(rec.Version)}
		if k := m.Authentication.SymmetricKey; k != nil {
			hm.PrimaryKey, hm.SecondaryKey = k.PrimaryKey, k.SecondaryKey
		}
		s.Modules = append(s.Modules, hm)
	}
	for _, rec := range twins {
		rev = max(rev, rec.Version)
	}
	csum := fnv.New64a() // the children's identities: a change of any sends them all
	for _, c := range kids {
		rev = max(rev, c.version, c.twinVersion)
		fmt.Fprintf(csum, "%s\x00%d\x00", c.dev.DeviceID, c.version)
	}
	childSum := fmt.Sprintf("%x", csum.Sum64())
	// A cursor above everything the device has now comes from a hub that
	// has since gone back (a restore, a lost revision file) or lost a
	// module: only a full sync is sure to be right.
	if since > rev {
		h.log.Info("sync: cursor ahead of the hub, syncing in full", "device", id, "cursor", cursor, "revision", rev)
		since = 0
	}
	s.Full = since == 0
	var sent []echo // the twins in the answer, noted once its cursor is known
	have := map[string]bool{}
	for _, rec := range twins {
		have[strings.TrimPrefix(rec.Key, "twins/"+id+"/")] = true
		if rec.Version > since && (s.Full || !h.echoed(rec.Key, rec.Version, since)) {
			s.Twins = append(s.Twins, rec.Value)
			sent = append(sent, echo{key: rec.Key, v: rec.Version})
		}
	}
	if s.Full { // modules whose twin was never written have a fresh one
		for _, m := range s.Modules {
			if !have[m.ModuleID] {
				b, err := twin.New(id, m.ModuleID, h.now()).MarshalJSON()
				if err != nil {
					return nil, err
				}
				s.Twins = append(s.Twins, b)
				sent = append(sent, echo{key: "twins/" + id + "/" + m.ModuleID})
			}
		}
	}
	if sent, err = h.syncChildren(s, kids, since, s.Full || childSum != cursorChildSum(cursor), sent); err != nil {
		return nil, err
	}
	// Not above a version a write under way may take: that write, visible
	// later, would fall under the cursor (see writeOrder). Records above
	// it are read again next time (those sent now, not sent again). (0:
	// no write of this process has ended yet, and the cursor would ask
	// for full syncs until one has.)
	if w, busy := h.order.visible(); busy && w > 0 && w < rev {
		rev = max(since, w)
	}
	if self {
		for _, e := range sent {
			h.sent(e.key, e.v, rev)
		}
	}
	fmt.Fprintf(sum, "%s\x00", childSum)
	revSum := fmt.Sprintf("%d.%x.%s", rev, sum.Sum64(), childSum)
	s.Cursor = revSum + "." + cursorMAC(key, d.DeviceID, d.GenerationID, revSum)
	return s, nil
}

// cursorChildSum returns the hash of the children's identities a cursor
// holds ("" for a cursor from before children were synced).
func cursorChildSum(cursor string) string {
	parts := strings.Split(cursor, ".")
	if len(parts) != 4 {
		return ""
	}
	return parts[2]
}

// child is a child device's identity and device twin records as a sync
// reads them.
type child struct {
	dev         registry.Device
	version     int64           // of its identity record
	twin        json.RawMessage // nil when its twin was never written
	twinVersion int64
}

// children reads the identities and twins of device id's children.
func (h *Hub) children(id string) ([]child, error) {
	ids, ok := h.notify.childrenOf(id)
	if !ok { // the notifier has not read the devices yet (or does not run)
		devs, err := h.reg.Children(id)
		if err != nil {
			return nil, err
		}
		for _, d := range devs {
			ids = append(ids, d.DeviceID)
		}
	}
	out := make([]child, 0, len(ids))
	for _, cid := range ids {
		rec, err := h.st.Get("devices/" + cid)
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted meanwhile: the notifier wakes the parent again
		}
		if err != nil {
			return nil, err
		}
		c := child{version: rec.Version}
		if err := json.Unmarshal(rec.Value, &c.dev); err != nil {
			return nil, fmt.Errorf("record %s: %w", rec.Key, err)
		}
		if c.dev.ParentID() != id {
			continue // re-parented meanwhile
		}
		c.dev.ETag = registry.ETagOf(rec.Version)
		tw, err := h.st.Get("twins/" + cid)
		switch {
		case err == nil:
			c.twin, c.twinVersion = tw.Value, tw.Version
		case !errors.Is(err, store.ErrNotFound):
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// syncChildren adds the children to s: all of them with every twin when
// all is set, else the twins written after since; it returns sent with the
// twins it adds.
func (h *Hub) syncChildren(s *hubapi.Sync, kids []child, since int64, all bool, sent []echo) ([]echo, error) {
	if all {
		s.Children = make([]hubapi.SyncChild, 0, len(kids))
	}
	for _, c := range kids {
		if all {
			sc := hubapi.SyncChild{DeviceID: c.dev.DeviceID, GenerationID: c.dev.GenerationID, Status: c.dev.Status, ETag: c.dev.ETag}
			if k := c.dev.Authentication; k != nil && k.SymmetricKey != nil {
				sc.PrimaryKey, sc.SecondaryKey = k.SymmetricKey.PrimaryKey, k.SymmetricKey.SecondaryKey
			}
			s.Children = append(s.Children, sc)
		} else if c.twinVersion <= since || h.echoed("twins/"+c.dev.DeviceID, c.twinVersion, since) {
			continue
		}
		t := twin.New(c.dev.DeviceID, "", h.now())
		if c.twin != nil {
			if err := t.UnmarshalJSON(c.twin); err != nil {
				return nil, fmt.Errorf("twin of device %s: %w", c.dev.DeviceID, err)
			}
		}
		b, err := h.twinJSON(t)
		if errors.Is(err, registry.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		s.ChildTwins = append(s.ChildTwins, b)
		// Version 0: a twin never written, which the device has as made here.
		sent = append(sent, echo{key: "twins/" + c.dev.DeviceID, v: c.twinVersion})
	}
	return sent, nil
}

// optimisticReads is how many times readDevice reads a device's records
// without its upload lock before it takes the lock.
const optimisticReads = 4

// readDevice reads device id's modules, twins and children (with their
// twins), and what its sync record says of the reported patches those twins
// hold (nil when it says nothing of this generation of the device). The
// twins and the seq must go together: laid under a seq older than its
// patches, a twin would have the device lay them on again (each raising its
// reported $version once more).
//
// It does not wait for an upload in progress: under the device's upload
// lock, as it was read, a sync answer (a desired change for 1,000 leaf
// devices) waited for an upload of 1,000 twins to be written, seconds at
// p99. An upload writes its twins and the sync record in one Txn, which
// readers see all or none of, and writes the sync record whenever it
// applies a patch: the record read before and after the rest at the same
// version says no upload's patches came in between, so the seq read first
// is that of the twins. Uploads landing in between mean reading again,
// under the lock after a few tries, so that back-to-back uploads cannot
// starve a sync.
func (h *Hub) readDevice(id, generationID string) (mods, twins []store.Record, sr *hubapi.SyncReported, kids []child, err error) {
	for attempt := 1; ; attempt++ {
		if attempt == optimisticReads {
			defer h.lockDevice(id)()
		}
		var before int64
		before, sr, err = h.syncRecord(id, generationID)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		if mods, err = h.st.List("modules/" + id + "/"); err != nil {
			return nil, nil, nil, nil, err
		}
		if twins, err = h.st.List("twins/" + id + "/"); err != nil {
			return nil, nil, nil, nil, err
		}
		if kids, err = h.children(id); err != nil { // their twins take this device's uploads too
			return nil, nil, nil, nil, err
		}
		if attempt >= optimisticReads {
			return mods, twins, sr, kids, nil
		}
		after, _, err := h.syncRecord(id, generationID)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		if after == before {
			return mods, twins, sr, kids, nil
		}
	}
}

// syncRecord reads device id's sync record: its version (0: none) and what
// it says of the reported patches the device's twins hold (nil when it says
// nothing of this generation of the device).
func (h *Hub) syncRecord(id, generationID string) (int64, *hubapi.SyncReported, error) {
	rec, err := h.st.Get(registry.DeviceSyncKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, err
	}
	var r syncRecord
	if err := json.Unmarshal(rec.Value, &r); err != nil {
		return 0, nil, fmt.Errorf("record %s: %w", rec.Key, err)
	}
	if r.GenerationID != generationID || r.ReportedSeq == 0 {
		return rec.Version, nil, nil
	}
	return rec.Version, &hubapi.SyncReported{Session: r.Session, Seq: r.ReportedSeq}, nil
}

// syncRecord is the hub's memory of a device's uploads: the last seq it
// applied, for one outbox session of one generation of the device. Another
// session or generation starts from nothing, so a device that numbers its
// patches anew (a wiped data dir, a re-created identity) is never skipped.
type syncRecord struct {
	GenerationID string `json:"generationId,omitempty"`
	Session      string `json:"session,omitempty"`
	ReportedSeq  int64  `json:"reportedSeq"`
}

// uploadReported serves POST …/devices/{id}/reported: it applies each patch
// whose seq is above the last one applied for the batch's session, in order,
// and acks the batch. The patches are applied in memory, each module's in
// order onto its twin, and then every changed twin and the new seq are
// written in one store Txn: the hub holds a seq only with its patches, and
// a retry after a failure applies nothing twice. A twin's reported $version
// rises once per patch that changes it, as when patches come one by one.
func (h *Hub) uploadReported(w http.ResponseWriter, r *http.Request, p principal) error {
	id := r.PathValue("id")
	if !p.isDevice(id) {
		return forbidden(p, "upload reported properties for device "+id)
	}
	var batch hubapi.ReportedBatch
	if err := readJSON(r, &batch); err != nil {
		return err
	}
	if !hubapi.ValidSession(batch.Session) {
		return errorf(http.StatusBadRequest, "ArgumentInvalid", "session %.80q: want 1 to 64 characters of A-Za-z0-9 and '-'", batch.Session)
	}
	prev := int64(0)
	for i, pt := range batch.Patches {
		switch {
		case pt.Seq < 1 || pt.Seq > hubapi.MaxSeq:
			return errorf(http.StatusBadRequest, "ArgumentInvalid", "patches[%d].seq: %d is out of range: a seq is from 1 to %d (start a new session past it)", i, pt.Seq, int64(hubapi.MaxSeq))
		case pt.Seq <= prev:
			return errorf(http.StatusBadRequest, "ArgumentInvalid", "patches[%d].seq: %d does not follow %d: a batch must be in order", i, pt.Seq, prev)
		}
		prev = pt.Seq
	}
	h.presence.touch(id)
	defer h.lockDevice(id)()
	for attempt := 1; ; attempt++ {
		ack, err := h.applyReported(id, &batch)
		if errors.Is(err, store.ErrConflict) && attempt < 10 {
			continue // a twin written meanwhile (a desired patch): apply onto it
		}
		if err != nil {
			return err // nothing done: the device retries the batch
		}
		writeJSON(w, http.StatusOK, ack)
		return nil
	}
}

// applyReported applies an upload (see uploadReported) in one store Txn.
func (h *Hub) applyReported(id string, batch *hubapi.ReportedBatch) (hubapi.ReportedAck, error) {
	dev, err := h.reg.GetDevice(id)
	if err != nil {
		return hubapi.ReportedAck{}, err
	}
	key := registry.DeviceSyncKey(id) // deleted with the device
	var sr syncRecord
	version := int64(0)
	if rec, err := h.st.Get(key); err == nil {
		if err := json.Unmarshal(rec.Value, &sr); err != nil {
			return hubapi.ReportedAck{}, fmt.Errorf("record %s: %w", key, err)
		}
		version = rec.Version
	} else if !errors.Is(err, store.ErrNotFound) {
		return hubapi.ReportedAck{}, err
	}
	if sr.GenerationID != dev.GenerationID || sr.Session != batch.Session {
		if sr.ReportedSeq > 0 {
			h.log.Info("reported uploads: a new outbox session", "device", id, "session", batch.Session, "generationId", dev.GenerationID)
		}
		sr = syncRecord{GenerationID: dev.GenerationID, Session: batch.Session}
	}
	ack := hubapi.ReportedAck{Acked: sr.ReportedSeq}
	type moduleTwin struct {
		t       *twin.Twin
		version int64 // of its record, for the Txn's check
		err     error // the module's twin cannot be had: its patches are rejected
		changed bool
	}
	twins := map[string]*moduleTwin{}
	var order []string
	rejected := map[string]bool{} // twins with a patch refused
	now := h.now().UTC()
	// The ops of the Txn: the sync record (and a check of the device when it
	// is new), then each twin's (a put, and a check of its device or module
	// when it is new). Where the store takes few in one Txn (etcd's
	// --max-txn-ops) the upload stops at the patch whose twin would not fit,
	// and the ack says so: the device sends the rest again (an edge device
	// with hundreds of leaf devices reporting at once).
	nops := 1
	if version == 0 {
		nops++
	}
	for _, pt := range batch.Patches {
		if pt.Seq <= sr.ReportedSeq {
			continue // applied before: this is a retry
		}
		ref := "/" + pt.DeviceID // a child's device twin ('/' is in no id)
		if pt.DeviceID == "" {
			pt.ModuleID = registry.CanonicalModuleID(pt.ModuleID) // queued by a daemon from before $edgeAgent
			ref = pt.ModuleID
		}
		m := twins[ref]
		if m == nil {
			m = new(moduleTwin)
			if pt.DeviceID != "" {
				m.t, m.version, m.err = h.childTwin(id, pt.DeviceID)
			} else {
				m.t, m.version, m.err = h.reg.LoadTwin(id, pt.ModuleID)
			}
			if m.err != nil && !errors.Is(m.err, registry.ErrNotFound) && !errors.Is(m.err, registry.ErrInvalid) {
				return hubapi.ReportedAck{}, m.err
			}
			if m.err == nil {
				n := 1
				if m.version == 0 {
					n++
				}
				if h.txnLimit > 0 && nops+n > h.txnLimit && ack.Acked > sr.ReportedSeq {
					break // the rest in the next upload
				}
				nops += n
			}
			twins[ref] = m
			order = append(order, ref)
		}
		ack.Acked = pt.Seq
		if m.err != nil {
			ack.Rejected = append(ack.Rejected, hubapi.Rejected{Seq: pt.Seq, Error: m.err.Error()})
			continue
		}
		trial := m.t.Clone() // a rejected patch leaves the twin as it was
		changed, err := trial.PatchReported(pt.Patch, now)
		if err != nil {
			rejected[ref] = true
			ack.Rejected = append(ack.Rejected, hubapi.Rejected{Seq: pt.Seq, Error: fmt.Errorf("%w: %v", registry.ErrInvalid, err).Error()})
			continue
		}
		if changed {
			m.t, m.changed = trial, true
		}
	}
	if ack.Acked == sr.ReportedSeq {
		return ack, nil // all of it applied before
	}
	sr.ReportedSeq = ack.Acked
	b, _ := json.Marshal(sr)
	ops := []store.Op{store.PutOp(key, b, version)}
	if version == 0 {
		// The device's first sync record: not for a device deleted meanwhile
		// (one there is deleted with it, and its version is the check).
		check, err := h.reg.IdentityCheck(id, "")
		if err != nil {
			return hubapi.ReportedAck{}, err
		}
		ops = append(ops, check)
	}
	var echoes []echo
	for _, mid := range order {
		if m := twins[mid]; m.changed {
			tops, err := h.reg.TwinOps(m.t, m.version)
			if errors.Is(err, registry.ErrNotFound) {
				// Its module went since it was read: again, which rejects its patches.
				return hubapi.ReportedAck{}, fmt.Errorf("%w: %v", store.ErrConflict, err)
			}
			if err != nil {
				return hubapi.ReportedAck{}, err
			}
			ops = append(ops, tops...)
			if !rejected[mid] {
				echoes = append(echoes, echo{key: tops[len(tops)-1].Key, prev: m.version})
			}
		}
	}
	v, err := h.st.Txn(ops...)
	if err != nil {
		return hubapi.ReportedAck{}, fmt.Errorf("apply reported patches: %w", err)
	}
	for _, e := range echoes {
		base := int64(math.MaxInt64) // unknown: the twin is sent
		if w, ok := h.echoes.Load(e.key); ok && w.(echo).v == e.prev {
			base = w.(echo).base // only this device's uploads wrote it since that
		}
		h.remember(e.key, echo{v: v, base: base})
	}
	return ack, nil
}

// echo is what the hub remembers of a twin for its device: the version it
// last knows of (v, one it sent the device or one the device's upload
// wrote), and, when only the device's uploads wrote the twin since the hub
// last sent it, the revision of the cursor that answer gave (base): a
// device syncing from that cursor or a later one has what it was sent.
// math.MaxInt64 when something else wrote it since (a desired patch), or
// the hub sent a version the device may not have.
type echo struct {
	key     string
	prev    int64 // while applying: the version the upload found
	v, base int64
}

// echoed reports whether version v of the twin record key is one the hub
// sent the device, or was written by its device's own upload with nothing
// but its uploads writing the twin since the version the hub last sent the
// device, and the device's cursor (since) says it has that answer: the
// device has that twin already (with the patches it sent), and an
// incremental sync leaves it out of the answer. Any other write in between
// (a desired patch) and the twin is sent, with it. (Only a version the hub
// sent counts, not one the cursor's revision covers.) It also keeps a twin
// above a cursor held back by a write under way (see writeOrder) from
// being sent again to the device that has it. Without this, every upload from a device with 1,000 leaf
// devices came back as 1,000 twins in the next sync answer, for the device
// to decode and compare. A twin that also had a patch refused is sent (the
// device's copy has the refused patch). It is the memory of this hub
// process only: another replica, or this one restarted, sends the twin, as
// before.
func (h *Hub) echoed(key string, v, since int64) bool {
	w, ok := h.echoes.Load(key)
	return ok && w.(echo).v == v && since >= w.(echo).base
}

// sent notes that the device was sent version v of the twin record key in
// an answer whose cursor has revision rev.
func (h *Hub) sent(key string, v, rev int64) { h.remember(key, echo{v: v, base: rev}) }

// maxEchoes bounds what the hub remembers for echoed (about 200 bytes a
// twin): a replica's memory does not grow with the fleet it serves. Past
// it the hub forgets them all, which costs only twins sent again once.
const maxEchoes = 50_000

func (h *Hub) remember(key string, e echo) {
	if _, loaded := h.echoes.Swap(key, e); !loaded && h.nEchoes.Add(1) > maxEchoes {
		h.echoes.Clear()
		h.nEchoes.Store(0)
	}
}

// childTwin loads the device twin of child for a reported patch its
// parent posts: an error wrapping registry.ErrInvalid when child is not a
// child of parent (any more), so that the patch is rejected.
func (h *Hub) childTwin(parent, child string) (*twin.Twin, int64, error) {
	d, err := h.reg.GetDevice(child)
	if err != nil {
		return nil, 0, err
	}
	if p := d.ParentID(); p != parent {
		return nil, 0, fmt.Errorf("%w: device %q is not a child of device %q (its parent is %q): its reported properties come through its parent only", registry.ErrInvalid, child, parent, p)
	}
	return h.reg.LoadTwin(child, "")
}

// lockDevice serialises a device's uploads, so that retries racing each
// other apply each patch once and in order.
func (h *Hub) lockDevice(id string) (unlock func()) { return h.uploads.Lock(id) }
