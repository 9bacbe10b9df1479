package hub_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/store"
	"github.com/outpost-edge/outpost/internal/store/etcdstore"
	"github.com/outpost-edge/outpost/internal/twin"
)

// TestReplicasKill9BehindHAProxy runs real processes: 3 members of Debian's
// etcd, 3 `outpost hub serve --store etcd` built from ./cmd/outpost, and
// Debian's haproxy in front of them with the configuration of docs/scale.md.
// A device long-polls through HAProxy while 4 clients patch its module twin
// through it; the replica holding the device's long poll gets kill -9. No
// acknowledged patch is lost, the device goes on through a survivor and sees
// the last patches, and HAProxy marks the killed replica down.
func TestReplicasKill9BehindHAProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd, haproxy and 3 hub processes")
	}
	haproxy, err1 := exec.LookPath("haproxy")
	etcd, err2 := exec.LookPath("etcd")
	if err1 != nil || err2 != nil {
		t.Skip("needs Debian's haproxy and etcd-server (scripts/test installs them as root)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "outpost")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/outpost").CombinedOutput(); err != nil {
		t.Fatalf("build outpost: %v\n%s", err, out)
	}

	// 3 etcd members.
	var peers, clients []string
	for i := range 3 {
		peers = append(peers, fmt.Sprintf("e%d=http://%s", i, freeLoopback(t)))
		clients = append(clients, "http://"+freeLoopback(t))
	}
	for i := range 3 {
		peer := strings.SplitN(peers[i], "=", 2)[1]
		startProcess(t, dir, fmt.Sprintf("etcd%d", i), etcd, "--name", fmt.Sprintf("e%d", i),
			"--data-dir", filepath.Join(dir, fmt.Sprintf("etcd%d", i)),
			"--listen-client-urls", clients[i], "--advertise-client-urls", clients[i],
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(peers, ","), "--initial-cluster-state", "new",
			"--log-level", "warn")
	}
	waitUntil(t, 60*time.Second, "etcd to take writes", func() error {
		st, err := etcdstore.Open(etcdstore.Config{Endpoints: clients, DialTimeout: time.Second, RequestTimeout: 2 * time.Second})
		if err != nil {
			return err
		}
		defer st.Close()
		_, err = st.Put("probe", []byte("{}"), store.Any)
		return err
	})

	// 3 replicas, the first one alone first (it makes the CA and the owner's key).
	lb := freeLoopback(t)
	lbHost := "localhost:" + lb[strings.LastIndex(lb, ":")+1:]
	var replicas []*exec.Cmd
	var addrs, dataDirs []string
	for i := range 3 {
		addr, data := freeLoopback(t), filepath.Join(dir, fmt.Sprintf("hub%d", i))
		replicas = append(replicas, startProcess(t, dir, fmt.Sprintf("hub%d", i), bin, "hub", "serve", "--store", "etcd",
			"--etcd-endpoints", strings.Join(clients, ","), "--data", data, "--listen", addr,
			"--amqp-listen", "", "--hostname", lbHost))
		addrs, dataDirs = append(addrs, addr), append(dataDirs, data)
		waitUntil(t, 60*time.Second, "replica "+addr+" to be ready", func() error { return probe(addr) })
	}

	// HAProxy with docs/scale.md's configuration on loopback.
	sock := filepath.Join(dir, "haproxy.sock")
	cfg := haproxyConfigFromDocs(t)
	for _, r := range []struct{ old, new string }{
		{"/run/haproxy/outpost.sock", sock},
		{"bind :443", "bind " + lb},
		{"10.0.0.11:443", addrs[0]}, {"10.0.0.12:443", addrs[1]}, {"10.0.0.13:443", addrs[2]},
	} {
		if !strings.Contains(cfg, r.old) {
			t.Fatalf("docs/scale.md's HAProxy configuration has no %q for the test to replace", r.old)
		}
		cfg = strings.ReplaceAll(cfg, r.old, r.new)
	}
	cfgFile := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(haproxy, "-c", "-f", cfgFile).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: the configuration of docs/scale.md does not load: %v\n%s", err, out)
	}
	startProcess(t, dir, "haproxy", haproxy, "-db", "-f", cfgFile)
	waitUntil(t, 30*time.Second, "HAProxy to see 3 replicas up", func() error {
		st, err := haproxyStatus(sock)
		if err != nil {
			return err
		}
		for _, s := range []string{"r1", "r2", "r3"} {
			if !strings.HasPrefix(st[s], "UP") {
				return fmt.Errorf("servers %v", st)
			}
		}
		return nil
	})

	// Clients through HAProxy, trusting the replicas' CA.
	var creds struct {
		ConnectionString string `json:"connectionString"`
	}
	b, err := os.ReadFile(filepath.Join(dataDirs[0], "credentials.json"))
	if err == nil {
		err = json.Unmarshal(b, &creds)
	}
	if err != nil {
		t.Fatalf("credentials.json of the first replica: %v", err)
	}
	caFile := filepath.Join(dataDirs[0], "ca.pem")
	client := func(cs string) *hubclient.Client {
		c, err := hubclient.New(cs, caFile)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	owner := client(creds.ConnectionString)
	d, err := owner.CreateDevice(ctx, hubapi.Device{DeviceID: "d"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := owner.CreateModule(ctx, hubapi.Module{DeviceID: "d", ModuleID: "m"}); err != nil {
		t.Fatal(err)
	}
	dev := client(fmt.Sprintf("HostName=%s;DeviceId=d;SharedAccessKey=%s", lbHost, d.Authentication.SymmetricKey.PrimaryKey))

	// The device: long polls in a loop, keeping the desired properties of
	// its module twin from the last sync.
	var devMu sync.Mutex
	var seen map[string]any
	syncs, syncErrs := 0, 0
	devCtx, devStop := context.WithCancel(ctx)
	devDone := make(chan struct{})
	go func() {
		defer close(devDone)
		cursor := ""
		for devCtx.Err() == nil {
			s, err := dev.Sync(devCtx, "d", cursor, 5*time.Second)
			devMu.Lock()
			if err != nil {
				syncErrs++
				devMu.Unlock()
				time.Sleep(100 * time.Millisecond)
				continue
			}
			cursor = s.Cursor
			syncs++
			if desired := desiredOf(s, "m"); desired != nil {
				seen = desired
			}
			devMu.Unlock()
		}
	}()
	defer func() { devStop(); <-devDone }()

	// 4 writers, each its own client (its own connection through HAProxy),
	// each patching its own property with rising values.
	const writers = 4
	acked := make([]int, writers)
	var ackMu sync.Mutex
	writeErrs := 0
	stopWriting := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		c := client(creds.ConnectionString)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; ; i++ {
				select {
				case <-stopWriting:
					return
				default:
				}
				patch := fmt.Appendf(nil, `{"properties":{"desired":{"w%d":%d}}}`, w, i)
				_, err := c.PatchTwin(ctx, "d", "m", patch, "")
				ackMu.Lock()
				if err == nil {
					acked[w] = i
				} else {
					writeErrs++
				}
				ackMu.Unlock()
				if err != nil {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	// Writes flow; then kill -9 the replica the device talks to (its
	// connection through HAProxy stays on one replica).
	time.Sleep(2 * time.Second)
	victim := -1
	waitUntil(t, 20*time.Second, "the replica the device talks to", func() error {
		var errs []string
		for i, a := range addrs {
			n, err := connectedDevices(a, creds.ConnectionString, caFile)
			if err == nil && n > 0 {
				victim = i
				return nil
			}
			errs = append(errs, fmt.Sprintf("%s: %d connected, %v", a, n, err))
		}
		return fmt.Errorf("no replica has the device connected: %s", strings.Join(errs, "; "))
	})
	ackMu.Lock()
	before := append([]int(nil), acked...)
	ackMu.Unlock()
	if err := replicas[victim].Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	killed := time.Now()
	t.Logf("kill -9 replica r%d (%s) with acknowledged writes %v", victim+1, addrs[victim], before)
	name := fmt.Sprintf("r%d", victim+1)
	waitUntil(t, 30*time.Second, "HAProxy to mark "+name+" down", func() error {
		st, err := haproxyStatus(sock)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(st[name], "DOWN") {
			return fmt.Errorf("%s is %q", name, st[name])
		}
		return nil
	})
	t.Logf("HAProxy marked %s down %v after the kill", name, time.Since(killed).Round(time.Millisecond))
	devMu.Lock()
	syncsAtDown := syncs
	devMu.Unlock()
	time.Sleep(time.Second) // writes go on through the survivors
	close(stopWriting)
	wg.Wait()
	ackMu.Lock()
	final := append([]int(nil), acked...)
	ackMu.Unlock()
	for w := range writers {
		if final[w] <= before[w] {
			t.Errorf("writer %d: no write acknowledged after the kill (%d before, %d at the end; %d write errors)", w, before[w], final[w], writeErrs)
		}
	}

	// No acknowledged write lost: the twin has each writer's last value (or a
	// later one it wrote but did not see acknowledged).
	tw, err := owner.GetTwin(ctx, "d", "m")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(tw.DesiredJSON(), &got); err != nil {
		t.Fatal(err)
	}
	for w := range writers {
		if v, _ := got[fmt.Sprintf("w%d", w)].(float64); int(v) < final[w] {
			t.Errorf("writer %d: the twin holds %v, but %d was acknowledged", w, got[fmt.Sprintf("w%d", w)], final[w])
		}
	}
	// The device goes on through a survivor and converges on the twin.
	waitUntil(t, 30*time.Second, "the device to see the last patches", func() error {
		devMu.Lock()
		defer devMu.Unlock()
		for w := range writers {
			k := fmt.Sprintf("w%d", w)
			if seen[k] != got[k] {
				return fmt.Errorf("device has %s=%v, twin %v (%d syncs, %d failed)", k, seen[k], got[k], syncs, syncErrs)
			}
		}
		if syncs <= syncsAtDown {
			return fmt.Errorf("no sync since the replica went down")
		}
		return nil
	})
	survivor := false // the device now talks to another replica
	for i, a := range addrs {
		if n, err := connectedDevices(a, creds.ConnectionString, caFile); i != victim && err == nil && n > 0 {
			survivor = true
		}
	}
	if !survivor {
		t.Errorf("no surviving replica has the device connected")
	}
	t.Logf("acknowledged writes %v (%d write errors around the kill), device syncs %d (%d failed)", final, writeErrs, syncs, syncErrs)
}

// freeLoopback returns a free 127.0.0.1 address.
func freeLoopback(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startProcess starts name's process (output in dir/name.log), killed at the
// end of the test; its log is shown if the test fails.
func startProcess(t *testing.T, dir, name, bin string, args ...string) *exec.Cmd {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 3000 {
				b = b[len(b)-3000:]
			}
			t.Logf("%s's log (end):\n%s", name, b)
		}
	})
	return cmd
}

func waitUntil(t *testing.T, d time.Duration, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting %v for %s: %v", d, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// probe asks a replica's /readyz.
func probe(addr string) error {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("https://" + addr + "/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("/readyz: %s %s", resp.Status, b)
	}
	return nil
}

// connectedDevices is how many devices the replica at addr has seen
// lately.
func connectedDevices(addr, ownerCS, caFile string) (int64, error) {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	c, err := hubclient.New(ownerCS, caFile, hubclient.WithHTTPClient(&http.Client{Transport: tr, Timeout: 5 * time.Second}))
	if err != nil {
		return 0, err
	}
	s, err := c.Status(context.Background())
	return int64(s.ConnectedDevices), err
}

// haproxyConfigFromDocs is the HAProxy configuration of docs/scale.md.
func haproxyConfigFromDocs(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../docs/scale.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, block := range strings.Split(string(b), "```text\n")[1:] {
		block = block[:strings.Index(block, "```")]
		if strings.Contains(block, "frontend hub") {
			return block
		}
	}
	t.Fatal("docs/scale.md has no ```text block with the HAProxy configuration (frontend hub)")
	return ""
}

// haproxyStatus is the status (UP, DOWN, …) of each server of HAProxy's
// backend replicas, from its stats socket.
func haproxyStatus(sock string) (map[string]string, error) {
	conn, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("show stat\n")); err != nil {
		return nil, err
	}
	r := csv.NewReader(bufio.NewReader(conn))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 || len(rows[0]) == 0 {
		return nil, fmt.Errorf("haproxy show stat: empty answer")
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[strings.TrimPrefix(h, "# ")] = i
	}
	st := map[string]string{}
	for _, row := range rows[1:] {
		if len(row) > col["status"] && row[col["pxname"]] == "replicas" {
			st[row[col["svname"]]] = row[col["status"]]
		}
	}
	return st, nil
}

// desiredOf is the desired properties of module's twin in a sync, nil if
// the sync has no such twin.
func desiredOf(s *hubapi.Sync, module string) map[string]any {
	for _, raw := range s.Twins {
		tw := new(twin.Twin)
		if tw.UnmarshalJSON(raw) != nil || tw.ModuleID != module {
			continue
		}
		var m map[string]any
		if json.Unmarshal(tw.DesiredJSON(), &m) != nil {
			return nil
		}
		return m
	}
	return nil
}
