// Package etcdtest runs etcd members embedded in a test (go.etcd.io/etcd/server/v3/embed),
// listening on 127.0.0.1 at free ports, with their data in temp dirs.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/store/etcdstore"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Cluster is a set of embedded etcd members.
type Cluster struct {
	t       testing.TB
	members []*Member
	pending []chan error // members restarting
}

// Member is one embedded etcd member.
type Member struct {
	Name      string
	ClientURL string
	peerURL   string
	dir       string
	initial   string
	etcd      *embed.Etcd // nil while stopped
}

// Start starts a cluster of n members and waits until it has a leader. The
// members stop at the end of the test.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	var initial []string
	for i := range n {
		m := &Member{Name: fmt.Sprintf("m%d", i), ClientURL: "http://" + freeAddr(t), peerURL: "http://" + freeAddr(t), dir: t.TempDir()}
		initial = append(initial, m.Name+"="+m.peerURL)
		c.members = append(c.members, m)
	}
	for _, m := range c.members {
		m.initial = strings.Join(initial, ",")
	}
	errc := make(chan error, n)
	for _, m := range c.members {
		go func() { errc <- m.start(true) }()
	}
	for range n {
		if err := <-errc; err != nil {
			c.stopAll()
			t.Fatal(err)
		}
	}
	t.Cleanup(c.stopAll)
	return c
}

// freeAddr returns a loopback address with a port free now.
func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (m *Member) start(fresh bool) error {
	cfg := embed.NewConfig()
	cfg.Name = m.Name
	cfg.Dir = m.dir
	cu, _ := url.Parse(m.ClientURL)
	pu, _ := url.Parse(m.peerURL)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = m.initial
	cfg.InitialClusterToken = "outpost-test"
	if !fresh {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.TickMs, cfg.ElectionMs = 50, 500 // leader elections in a fraction of a second
	cfg.SnapshotCount = 10000
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("etcdtest: start %s: %w", m.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("etcdtest: %s: %w", m.Name, err)
	case <-time.After(60 * time.Second):
		e.Close()
		return fmt.Errorf("etcdtest: %s not ready after a minute", m.Name)
	}
	m.etcd = e
	return nil
}

// Members are the cluster's members.
func (c *Cluster) Members() []*Member { return c.members }

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.members))
	for i, m := range c.members {
		eps[i] = m.ClientURL
	}
	return eps
}

// Stop stops member i (its data stays, for Restart).
func (c *Cluster) Stop(i int) {
	if m := c.members[i]; m.etcd != nil {
		m.etcd.Close()
		m.etcd = nil
	}
}

// Restart starts member i again on its data; it does not wait for a quorum, which
// it may be needed for.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	m := c.members[i]
	if m.etcd != nil {
		return
	}
	errc := make(chan error, 1)
	go func() { errc <- m.start(false) }()
	// ReadyNotify needs a quorum: with several members down, restart them all before waiting.
	c.pending = append(c.pending, errc)
}

// Wait waits for the members restarted since the last Wait to be ready.
func (c *Cluster) Wait() {
	c.t.Helper()
	for _, errc := range c.pending {
		if err := <-errc; err != nil {
			c.t.Fatal(err)
		}
	}
	c.pending = nil
}

func (c *Cluster) stopAll() {
	for _, errc := range c.pending { // a restart still under way sets its member's etcd
		<-errc
	}
	c.pending = nil
	for i := range c.members {
		c.Stop(i)
	}
}

var prefixes atomic.Int64

// Open opens an etcdstore on the cluster under a prefix of its own, closed at the end
// of the test.
func (c *Cluster) Open(t testing.TB) *etcdstore.Store {
	t.Helper()
	s, err := etcdstore.Open(etcdstore.Config{
		Endpoints:      c.Endpoints(),
		Prefix:         fmt.Sprintf("/test%d", prefixes.Add(1)),
		RequestTimeout: 3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Opener is c.Open as a storetest.Opener.
func (c *Cluster) Opener() func(testing.TB) store.Store {
	return func(t testing.TB) store.Store { return c.Open(t) }
}

var shared struct {
	once sync.Once
	eps  []string
	err  error
}

// SharedEndpoints starts, once per process, one etcd member that lasts until the
// process ends, for suites that run every test on etcd (OUTPOST_TEST_STORE=etcd).
// Its data dir is left in the temp dir.
func SharedEndpoints() ([]string, error) {
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "outpost-etcdtest-")
		if err != nil {
			shared.err = err
			return
		}
		ln1, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			shared.err = err
			return
		}
		ln2, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			shared.err = err
			return
		}
		m := &Member{Name: "shared", ClientURL: "http://" + ln1.Addr().String(), peerURL: "http://" + ln2.Addr().String(), dir: dir}
		ln1.Close()
		ln2.Close()
		m.initial = m.Name + "=" + m.peerURL
		shared.err = m.start(true)
		shared.eps = []string{m.ClientURL}
	})
	return shared.eps, shared.err
}

// OpenShared opens a store under prefix on the shared member; the caller closes it.
func OpenShared(prefix string) (*etcdstore.Store, error) {
	eps, err := SharedEndpoints()
	if err != nil {
		return nil, err
	}
	return etcdstore.Open(etcdstore.Config{Endpoints: eps, Prefix: prefix})
}

// OpenPrefix opens an etcdstore on the cluster under prefix (replicas of one hub
// share it), closed at the end of the test unless the caller closes it first.
func (c *Cluster) OpenPrefix(t testing.TB, prefix string) *etcdstore.Store {
	t.Helper()
	s, err := etcdstore.Open(etcdstore.Config{Endpoints: c.Endpoints(), Prefix: prefix, RequestTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
