// Package etcdstore is a store.Store on etcd, so that any number of hub replicas
// share one fleet's records.
//
// A record is the etcd key PREFIX/KEY (PREFIX, say /outpost, ends without a
// slash; one is added) holding the value's bytes. A record's version is the
// key's mod revision: etcd's revisions come from one counter for the whole
// cluster and rise with every write, exactly as the file store's versions do,
// and the keys of one transaction share its revision. Compare-and-swap is an
// etcd transaction comparing the key's mod revision (0: the key does not
// exist); Txn is one etcd transaction; Watch is an etcd watch on the prefix,
// started at the revision current when Watch is called so that no change made
// after Watch returns is missed.
//
// etcd refuses requests over its --max-request-bytes (1.5 MiB by default) and
// transactions of more than --max-txn-ops (128) operations; the store refuses
// them first, naming the record, so that the caller gets a clear error rather
// than etcd's. When etcd cannot answer (no quorum, unreachable) an operation
// fails after Config.RequestTimeout with an error wrapping
// store.ErrUnavailable.
package etcdstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/store"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Defaults of Config.
const (
	DefaultPrefix          = "/outpost"
	DefaultMaxRequestBytes = 3 << 19 // etcd's default --max-request-bytes, 1.5 MiB
	DefaultMaxTxnOps       = 128     // etcd's default --max-txn-ops
	DefaultRequestTimeout  = 5 * time.Second
	DefaultDialTimeout     = 5 * time.Second
)

// requestOverhead is what an etcd request adds to its keys and values, a
// generous bound so that a request the store lets through is never refused by
// etcd for its size.
const requestOverhead = 4 << 10

// listPage is how many records List reads per etcd request.
const listPage = 1000

// Config says how to reach etcd.
type Config struct {
	Endpoints []string // e.g. https://10.0.0.1:2379
	Prefix    string   // the keys' prefix, DefaultPrefix if empty
	TLS       *tls.Config
	Username  string
	Password  string
	// MaxRequestBytes and MaxTxnOps are etcd's --max-request-bytes and
	// --max-txn-ops; 0 takes etcd's defaults.
	MaxRequestBytes int
	MaxTxnOps       int
	DialTimeout     time.Duration
	RequestTimeout  time.Duration // for each request; DefaultRequestTimeout if 0
	Logger          *slog.Logger
}

// Store is a store.Store on etcd; see the package documentation.
type Store struct {
	cli      *clientv3.Client
	prefix   string // ends in "/"
	maxBytes int
	maxOps   int
	timeout  time.Duration
	log      *slog.Logger
	eps      []string
	hints    hints // of readPage
	stats    rangeStats

	mu      sync.RWMutex
	closed  bool
	ctx     context.Context // done at Close
	cancel  context.CancelFunc
	watchWG sync.WaitGroup
}

var _ store.Store = (*Store)(nil)

// Open connects to etcd and checks that it answers.
func Open(cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd store: no endpoints: give --etcd-endpoints URL,… (e.g. http://127.0.0.1:2379)")
	}
	for _, ep := range cfg.Endpoints {
		if ep == "" || strings.ContainsAny(ep, " ,") {
			return nil, fmt.Errorf("etcd store: bad endpoint %q in --etcd-endpoints: give URLs separated by commas, e.g. https://10.0.0.1:2379,https://10.0.0.2:2379", ep)
		}
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		TLS:         cfg.TLS,
		Username:    cfg.Username,
		Password:    cfg.Password,
		Logger:      zap.NewNop(),
		// Not RejectOldCluster: this client refuses a cluster older than its
		// previous minor release (3.6), and Debian 12's etcd-server is 3.4,
		// whose v3 API (ranges, transactions, watches, status) is all the
		// store uses (internal/hub TestReplicasKill9BehindHAProxy runs on it).
	})
	if err != nil {
		return nil, fmt.Errorf("etcd store: connect to %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	s := newStore(cli, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout+cfg.DialTimeout)
	defer cancel()
	if _, err := cli.Get(ctx, s.prefix+"\x00", clientv3.WithKeysOnly()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd store: etcd at %s does not answer (%v): check --etcd-endpoints, the etcd members, and the TLS or user flags", strings.Join(cfg.Endpoints, ","), err)
	}
	return s, nil
}

func newStore(cli *clientv3.Client, cfg Config) *Store {
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	s := &Store{
		cli:      cli,
		prefix:   strings.TrimSuffix(prefix, "/") + "/",
		maxBytes: cfg.MaxRequestBytes,
		maxOps:   cfg.MaxTxnOps,
		timeout:  cfg.RequestTimeout,
		log:      cfg.Logger,
		eps:      cfg.Endpoints,
	}
	if s.maxBytes <= 0 {
		s.maxBytes = DefaultMaxRequestBytes
	}
	if s.maxOps <= 0 {
		s.maxOps = DefaultMaxTxnOps
	}
	if s.timeout <= 0 {
		s.timeout = DefaultRequestTimeout
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Client is the store's etcd client (status, migration).
func (s *Store) Client() *clientv3.Client { return s.cli }

// Prefix is the prefix of the store's etcd keys, ending in a slash.
func (s *Store) Prefix() string { return s.prefix }

// Endpoints are the etcd endpoints the store was opened with.
func (s *Store) Endpoints() []string { return s.eps }

// op returns a context for one request, or ErrClosed.
func (s *Store) op() (context.Context, context.CancelFunc, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, nil, store.ErrClosed
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	return ctx, cancel, nil
}

// fail wraps err, the failure of an etcd request for what ("put KEY").
func (s *Store) fail(what string, err error) error {
	if s.ctx.Err() != nil {
		return store.ErrClosed
	}
	if unavailable(err) {
		return &UnavailableError{Op: what, Endpoints: s.eps, Timeout: s.timeout, Err: err}
	}
	return fmt.Errorf("store: %s: etcd: %w", what, err)
}

// UnavailableError is a request etcd did not answer: no quorum, no leader, or no
// member reachable. Nothing is known to be written; retry once etcd is back.
type UnavailableError struct {
	Op        string
	Endpoints []string
	Timeout   time.Duration // the request timeout, when it ran out
	Err       error
}

func (e *UnavailableError) Error() string {
	eps := strings.Join(e.Endpoints, ",")
	// A request that ran out of time says only that no answer came in time:
	// etcd without quorum, or etcd or this hub too busy (a replica short of
	// CPU under a storm of connections times out with etcd healthy).
	if errors.Is(e.Err, context.DeadlineExceeded) || status.Code(e.Err) == codes.DeadlineExceeded {
		return fmt.Sprintf("store: %s: etcd is unavailable or slow: no answer within %v (%v): either no quorum of etcd members (%s) answers, or etcd or this hub is too busy to answer in time; check the members with `outpost hub status` or etcdctl endpoint health, and this machine's load",
			e.Op, e.Timeout, e.Err, eps)
	}
	return fmt.Sprintf("store: %s: etcd is unavailable (%v): the hub cannot read or write its records until a quorum of etcd members (%s) answers again; check them with `outpost hub status` or etcdctl endpoint health",
		e.Op, e.Err, eps)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, store.ErrUnavailable) true.
func (e *UnavailableError) Is(target error) bool { return target == store.ErrUnavailable }

func unavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, rpctypes.ErrNoLeader) ||
		errors.Is(err, rpctypes.ErrTimeout) || errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail) ||
		errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost) || errors.Is(err, rpctypes.ErrLeaderChanged) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// Get returns the record under key.
func (s *Store) Get(key string) (store.Record, error) {
	if err := store.CheckKey(key); err != nil {
		return store.Record{}, err
	}
	ctx, cancel, err := s.op()
	if err != nil {
		return store.Record{}, err
	}
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix+key)
	if err != nil {
		return store.Record{}, s.fail("get "+key, err)
	}
	if len(resp.Kvs) == 0 {
		return store.Record{}, fmt.Errorf("store: %s: %w", key, store.ErrNotFound)
	}
	return s.record(resp.Kvs[0]), nil
}

// RangeThrough returns, sorted by key, the records with keys after `after`
// and up to `last` (both full keys, e.g. "twins/d1" and "twins/d9/m"): a
// range with both ends given, so that etcd reads only those keys. (A range
// with a limit but no end costs etcd 3.4 a walk over the rest of the prefix
// for each page; etcd 3.5 stops at the limit.)
func (s *Store) RangeThrough(after, last string) ([]store.Record, error) {
	ctx, cancel, err := s.op()
	if err != nil {
		return nil, err
	}
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix+after+"\x00", clientv3.WithRange(s.prefix+last+"\x00"))
	if err != nil {
		return nil, s.fail("list "+after+" to "+last, err)
	}
	recs := make([]store.Record, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		recs[i] = s.record(kv)
	}
	return recs, nil
}

// GetMany returns the records of those of keys that exist, in no given
// order: one etcd transaction of gets per etcd's --max-txn-ops keys, each at
// one revision (the hub's queries read a page of twins with it), up to
// getManyParallel of them at once.
func (s *Store) GetMany(keys []string) ([]store.Record, error) {
	for _, k := range keys {
		if err := store.CheckKey(k); err != nil {
			return nil, err
		}
	}
	chunks := slices.Collect(slices.Chunk(keys, s.maxOps))
	got := make([][]store.Record, len(chunks))
	errs := make([]error, len(chunks))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(getManyParallel, len(chunks)) {
		wg.Go(func() {
			for i := range next {
				got[i], errs[i] = s.getTxn(chunks[i])
			}
		})
	}
	for i := range chunks {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return slices.Concat(got...), nil
}

// getManyParallel is how many transactions of gets GetMany has in flight:
// etcd answers each on its own, and a page of 1,000 keys is eight of them.
const getManyParallel = 8

// getTxn gets keys in one transaction.
func (s *Store) getTxn(keys []string) ([]store.Record, error) {
	ctx, cancel, err := s.op()
	if err != nil {
		return nil, err
	}
	defer cancel()
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		ops[i] = clientv3.OpGet(s.prefix + k)
	}
	resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, s.fail(fmt.Sprintf("get %d records (%s, …)", len(keys), keys[0]), err)
	}
	var recs []store.Record
	for _, r := range resp.Responses {
		for _, kv := range r.GetResponseRange().GetKvs() {
			recs = append(recs, s.record(kv))
		}
	}
	return recs, nil
}

// Count returns how many records there are under prefix, without reading
// them (etcd walks their keys in its index).
func (s *Store) Count(prefix string) (int64, error) {
	ctx, cancel, err := s.op()
	if err != nil {
		return 0, err
	}
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix+prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, s.fail("count "+prefix, err)
	}
	return resp.Count, nil
}

func (s *Store) record(kv *mvccpb.KeyValue) store.Record {
	return store.Record{Key: string(kv.Key[len(s.prefix):]), Version: kv.ModRevision, Value: kv.Value}
}

// List returns the records under prefix, sorted by key, as of one revision.
func (s *Store) List(prefix string) ([]store.Record, error) {
	recs, _, err := s.listAt(prefix, "")
	return recs, err
}

// Range returns at most limit (0: no limit) records under prefix whose keys sort
// after `after`, sorted by key.
func (s *Store) Range(prefix, after string, limit int) ([]store.Record, error) {
	if limit <= 0 {
		recs, _, err := s.listAt(prefix, after) // paged, at one revision
		return recs, err
	}
	recs, _, err := s.rangeAt(prefix, after, limit, 0, false)
	return recs, err
}

// RangeKeys is Range without the records' values: their keys and versions
// only (etcd sends no values).
func (s *Store) RangeKeys(prefix, after string, limit int) ([]store.Record, error) {
	recs, _, err := s.rangeAt(prefix, after, limit, 0, true)
	return recs, err
}

// rangeAt reads one page at revision rev (0: the latest), with keysOnly
// without values, and returns the revision read.
func (s *Store) rangeAt(prefix, after string, limit int, rev int64, keysOnly bool) ([]store.Record, int64, error) {
	ctx, cancel, err := s.op()
	if err != nil {
		return nil, 0, err
	}
	defer cancel()
	from := s.prefix + prefix
	if after != "" && after >= prefix {
		from = s.prefix + after + "\x00"
	}
	return s.readPage(ctx, prefix, from, limit, rev, keysOnly)
}

// compare returns the condition of a write to k expecting version expect.
func compare(k string, expect int64) clientv3.Cmp {
	return clientv3.Compare(clientv3.ModRevision(k), "=", expect)
}

// checkSize refuses a request of n bytes that etcd would refuse.
func (s *Store) checkSize(what string, n int) error {
	if n+requestOverhead > s.maxBytes {
		return store.Invalidf("store: %s: %d bytes, over etcd's request limit of %d bytes (its --max-request-bytes, less %d bytes of overhead): "+
			"write less at once, or raise etcd's --max-request-bytes and the hub's --etcd-max-request-bytes together", what, n, s.maxBytes-requestOverhead, requestOverhead)
	}
	return nil
}

// Put writes value under key if the record's version is expect.
func (s *Store) Put(key string, value []byte, expect int64) (int64, error) {
	if err := store.CheckPut(key, value, expect); err != nil {
		return 0, err
	}
	if err := s.checkSize("put "+key, len(key)+len(value)); err != nil {
		return 0, err
	}
	ctx, cancel, err := s.op()
	if err != nil {
		return 0, err
	}
	defer cancel()
	k := s.prefix + key
	if expect == store.Any {
		resp, err := s.cli.Put(ctx, k, string(value))
		if err != nil {
			return 0, s.fail("put "+key, err)
		}
		return resp.Header.Revision, nil
	}
	resp, err := s.cli.Txn(ctx).If(compare(k, expect)).Then(clientv3.OpPut(k, string(value))).
		Else(clientv3.OpGet(k, clientv3.WithKeysOnly())).Commit()
	if err != nil {
		return 0, s.fail("put "+key, err)
	}
	if !resp.Succeeded {
		return 0, &store.ConflictError{Key: key, Expect: expect, Current: currentOf(resp.Responses[0])}
	}
	return resp.Header.Revision, nil
}

func currentOf(r *pb.ResponseOp) int64 {
	if kvs := r.GetResponseRange().GetKvs(); len(kvs) > 0 {
		return kvs[0].ModRevision
	}
	return 0
}

// Delete removes the record under key if its version is expect.
func (s *Store) Delete(key string, expect int64) error {
	if err := store.CheckDelete(key, expect); err != nil {
		return err
	}
	ctx, cancel, err := s.op()
	if err != nil {
		return err
	}
	defer cancel()
	k := s.prefix + key
	txn := s.cli.Txn(ctx)
	if expect != store.Any {
		txn = txn.If(compare(k, expect))
	}
	resp, err := txn.Then(clientv3.OpDelete(k)).Else(clientv3.OpGet(k, clientv3.WithKeysOnly())).Commit()
	if err != nil {
		return s.fail("delete "+key, err)
	}
	if resp.Succeeded && resp.Responses[0].GetResponseDeleteRange().GetDeleted() > 0 {
		return nil
	}
	cur := int64(0)
	if !resp.Succeeded {
		cur = currentOf(resp.Responses[0])
	}
	if cur == 0 {
		return fmt.Errorf("store: delete %s: %w", key, store.ErrNotFound)
	}
	return &store.ConflictError{Key: key, Expect: expect, Current: cur}
}

// TxnLimit is how many ops one Txn may have: etcd's --max-txn-ops, as the
// store was told (Config.MaxTxnOps).
func (s *Store) TxnLimit() int { return s.maxOps }

// Txn applies ops all or none in one etcd transaction.
func (s *Store) Txn(ops ...store.Op) (int64, error) {
	if _, err := store.CheckOps(ops); err != nil {
		return 0, err
	}
	if len(ops) == 0 {
		return 0, nil
	}
	size := 0
	var cmps []clientv3.Cmp
	var checked []int // the ops compared, in order
	thens := make([]clientv3.Op, 0, len(ops))
	for i, op := range ops {
		k := s.prefix + op.Key
		size += len(k) + len(op.Value)
		if op.Expect != store.Any {
			cmps = append(cmps, compare(k, op.Expect))
			checked = append(checked, i)
		}
		switch {
		case op.Check:
		case op.Delete:
			thens = append(thens, clientv3.OpDelete(k))
		default:
			thens = append(thens, clientv3.OpPut(k, string(op.Value)))
		}
	}
	if n := max(len(thens), len(cmps)); n > s.maxOps {
		return 0, store.Invalidf("store: txn: %d writes (first %s), over etcd's limit of %d operations in one transaction (its --max-txn-ops): "+
			"write fewer records at once, or raise etcd's --max-txn-ops and the hub's --etcd-max-txn-ops together", n, ops[0].Key, s.maxOps)
	}
	if err := s.checkSize(fmt.Sprintf("txn of %d records (first %s)", len(ops), ops[0].Key), size); err != nil {
		return 0, err
	}
	elses := make([]clientv3.Op, len(checked))
	for j, i := range checked {
		elses[j] = clientv3.OpGet(s.prefix+ops[i].Key, clientv3.WithKeysOnly())
	}
	ctx, cancel, err := s.op()
	if err != nil {
		return 0, err
	}
	defer cancel()
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(thens...).Else(elses...).Commit()
	if err != nil {
		return 0, s.fail("txn of "+ops[0].Key+"…", err)
	}
	if !resp.Succeeded {
		for j, i := range checked {
			if cur := currentOf(resp.Responses[j]); cur != ops[i].Expect {
				return 0, &store.ConflictError{Key: ops[i].Key, Expect: ops[i].Expect, Current: cur}
			}
		}
		return 0, fmt.Errorf("store: txn of %s…: etcd refused its conditions, yet every record is at its expected version: %w", ops[0].Key, store.ErrConflict)
	}
	i := 0 // resp.Responses has one response a write
	for _, op := range ops {
		if op.Check {
			continue
		}
		if !op.Delete || resp.Responses[i].GetResponseDeleteRange().GetDeleted() > 0 {
			return resp.Header.Revision, nil
		}
		i++
	}
	return 0, nil // deletes of what was not there, or checks alone
}

// Close closes every watch channel and the etcd client. Closing twice does nothing.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.watchWG.Wait()
	return s.cli.Close()
}
