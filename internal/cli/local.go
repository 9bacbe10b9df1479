package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/deviceca"
	"github.com/outpost-edge/outpost/internal/identity"
	"github.com/outpost-edge/outpost/internal/mgmt"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/internal/runtime"
)

// The device-local commands talk to the daemon over its management socket
// through internal/mgmtclient; only check also looks at the machine itself.

const localLong = `It talks to the device daemon over its management socket (--mgmt-socket,
default /run/outpost/mgmt.sock, mode 0600: run it as the daemon's user).`

// MgmtClient returns a client for the daemon's management socket of the
// configuration (--mgmt-socket, OUTPOST_MGMT_SOCKET or mgmt-socket).
func (f *Factory) MgmtClient() *mgmtclient.Client {
	return mgmtclient.New(f.Config().GetString("mgmt-socket"))
}

func newListCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:         "list",
		Annotations: map[string]string{sectionAnnotation: "daemon"},
		Short:       "List the modules this device runs, with status, restarts and uptime",
		Long: `List the modules of the device's deployment and how they run. For a module
that does not run as it should (backoff, failed, unhealthy, stopped), the
REASON column says why, cut to the terminal's width; -o json has it whole
(description).

` + localLong,
		Example: `  outpost list
  outpost list -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			mods, err := f.MgmtClient().Modules(cmd.Context())
			if err != nil {
				return fmt.Errorf("list: %w", err)
			}
			now := f.Now()
			return f.Print(mods, func(w io.Writer) error {
				t := NewTable("name", "status", "image", "restarts", "uptime", "reason")
				for _, m := range mods {
					t.Row(m.Name, f.IO.ColorStatus(statusCell(m)), imageCell(m), strconv.Itoa(m.Restarts), uptime(m, now), reasonCell(m))
				}
				t.FitLast(f.IO.Width())
				return t.Write(w)
			})
		},
	}
	addMgmtSocketFlag(cmd)
	return cmd
}

func statusCell(m mgmtclient.Module) string {
	if m.ExitCode != nil && m.Status != "running" {
		return fmt.Sprintf("%s (exit %d)", m.Status, *m.ExitCode)
	}
	return m.Status
}

// imageCell shows the image as deployed with its digest shortened; a tag
// deployed as it is gets the digest of the image running, in brackets.
func imageCell(m mgmtclient.Module) string {
	if strings.Contains(m.Image, "@") || m.ImageDigest == "" {
		return shortDigestRef(m.Image)
	}
	return m.Image + " (" + strings.TrimPrefix(shortDigestRef("@"+m.ImageDigest), "@") + ")"
}

func uptime(m mgmtclient.Module, now time.Time) string {
	if m.Status != "running" || m.StartedAt.IsZero() {
		return "-"
	}
	return humanDuration(now.Sub(m.StartedAt))
}

// humanDuration is docker's style: 45s, 12m, 3h5m, 2d4h.
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", max(0, int(d.Seconds())))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

func newLogsCmd(f *Factory) *cobra.Command {
	opts := &logsOptions{}
	cmd := &cobra.Command{
		Use:         "logs MODULE",
		Annotations: map[string]string{sectionAnnotation: "daemon"},
		Short:       "Print a module's logs (stdout and stderr)",
		Long: `Print a module's logs: its stdout and stderr, merged, kept across restarts in
size-capped files. With -f, go on printing new lines until interrupted, across
the module's restarts and re-creates (a new deployment): each change is told
on stderr between the lines it separates, as
"--- tempsensor restarted (instance pid 1234, started 15:04:05.123, restart 1) ---",
and the new instance's lines follow. With --all, every module's lines, each
prefixed with the module's name (coloured on a terminal); with -f, modules
deployed later too.

` + localLong,
		Example: `  outpost logs tempsensor
  outpost logs tempsensor -f --tail 20
  outpost logs tempsensor --since 10m
  outpost logs --all -f --tail 5`,
		Args: func(cmd *cobra.Command, args []string) error {
			if opts.All {
				if len(args) > 0 {
					return flagErrorf("%s --all takes no MODULE (got %q): drop one or the other", cmd.CommandPath(), args[0])
				}
				return nil
			}
			return exactArgs(1, "one module name, or --all")(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Tail < 0 {
				return flagErrorf("invalid --tail %d: want a number of lines", opts.Tail)
			}
			if opts.SinceText != "" {
				t, err := mgmt.ParseSince(opts.SinceText, f.Now())
				if err != nil {
					return flagErrorf("invalid --since: %v", err)
				}
				opts.Since = t
			}
			if len(args) == 1 {
				opts.Module = args[0]
			}
			return logsRun(cmd.Context(), f, opts)
		},
	}
	cmd.Flags().BoolVarP(&opts.Follow, "follow", "f", false, "follow: keep printing new lines, across restarts and re-creates")
	cmd.Flags().IntVar(&opts.Tail, "tail", 0, "only the last N lines (0: all); with --all, of each module")
	cmd.Flags().StringVar(&opts.SinceText, "since", "", "only lines since a time (RFC 3339) or for a duration (10m)")
	cmd.Flags().BoolVar(&opts.All, "all", false, "every module's logs, each line prefixed with the module's name")
	addMgmtSocketFlag(cmd)
	return cmd
}

func newRestartCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:         "restart MODULE",
		Annotations: map[string]string{sectionAnnotation: "daemon"},
		Short:       "Restart a module's instance now",
		Long: `Stop a module's instance and start a new one now, whatever its state; a
module waiting in back-off starts at once. With -o json|yaml it prints
{"action": "restarted", "moduleId": MODULE}.

` + localLong,
		Example: `  outpost restart tempsensor`,
		Args:    exactArgs(1, "one module name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.MgmtClient().Restart(cmd.Context(), args[0]); err != nil {
				return fmt.Errorf("restart %s: %w", args[0], err)
			}
			return f.done(doneResult{Action: "restarted", ModuleID: args[0]}, "restarted %s", args[0])
		},
	}
	addMgmtSocketFlag(cmd)
	return cmd
}

func newStatusCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:         "status",
		Annotations: map[string]string{sectionAnnotation: "daemon"},
		Short:       "Show the daemon's link to its hub, its outbox, its cached twins and modules' broker links",
		Long: `Show whether the daemon is connected to its hub and since when, its last
sync, why the hub was last unreachable (the last error, kept once it is back),
the reported patches waiting in its outbox, the device CA (its file and the
SHA-256 fingerprint of the root leaf devices trust, as outpost daemon ca
prints it) and the names the broker's certificate is valid for, and the
versions of the twins it has cached (what it runs on while offline), with
each one's reported patches still queued in the outbox and its versions as
the hub last sent them (as of the last sync while connected; last seen, and
how long ago, while offline), and the child (leaf) devices that connected
since the daemon started: connected or not and since when, when the broker
last heard from each, and each one's reported patches waiting in the outbox. For each module that connected
to the module broker since the daemon started: whether it is connected now and
since when, and the desired version the broker last sent it (in a twin answer
or a desired patch); its reported version is that of its twin on the device,
the version its last report was acknowledged with.

` + localLong,
		Example: `  outpost status
  outpost status -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := f.MgmtClient().Status(cmd.Context())
			if err != nil {
				return fmt.Errorf("status: %w", err)
			}
			now := f.Now()
			return f.Print(st, func(w io.Writer) error {
				conn := "no"
				if st.Connected {
					conn = "yes"
				}
				iso := ""
				if !st.Isolated {
					iso = " (not isolated: modules are host processes)"
				}
				fmt.Fprintf(w, "device:     %s\n", st.DeviceID)
				if st.HubHost != "" {
					fmt.Fprintf(w, "hub:        %s\n", st.HubHost)
				}
				fmt.Fprintf(w, "runtime:    %s%s\n", st.Runtime, iso)
				fmt.Fprintf(w, "connected:  %s, since %s (%s)\n", conn, st.Since.UTC().Format(time.RFC3339), humanDuration(now.Sub(st.Since)))
				last := "never"
				if !st.LastSync.IsZero() {
					last = st.LastSync.UTC().Format(time.RFC3339) + " (" + humanDuration(now.Sub(st.LastSync)) + " ago)"
				}
				fmt.Fprintf(w, "last sync:  %s\n", last)
				if st.LastError != "" {
					fmt.Fprintf(w, "last error: %s (%s ago): %s\n", st.LastErrorAt.UTC().Format(time.RFC3339), humanDuration(now.Sub(st.LastErrorAt)), st.LastError)
				}
				fmt.Fprintf(w, "outbox:     %d patches, %d bytes", st.Outbox.Patches, st.Outbox.Bytes)
				if !st.Outbox.Oldest.IsZero() {
					fmt.Fprintf(w, ", oldest %s", st.Outbox.Oldest.UTC().Format(time.RFC3339))
				}
				fmt.Fprintln(w)
				printMessageQueue(w, st.Messages)
				printDeviceCA(w, st.DeviceCA)
				fmt.Fprintln(w)
				links := map[string]mgmtclient.BrokerModule{}
				for _, m := range st.Broker.Modules {
					links[m.ModuleID] = m
				}
				fmt.Fprintf(w, "hub twins:  %s\n", hubTwinsAsOf(st, now))
				t := NewTable("twin", "desired", "reported", "queued", "hub desired", "hub reported", "broker", "desired sent")
				row := func(id string, cells ...string) {
					m, ok := links[id]
					delete(links, id)
					t.Row(append(append([]string{id}, cells...), brokerCell(m, ok, now), sentCell(m, ok))...)
				}
				for _, tv := range st.Twins {
					hubD, hubR := "-", "-"
					if !tv.HubSeenAt.IsZero() {
						hubD, hubR = strconv.FormatInt(tv.HubDesiredVersion, 10), strconv.FormatInt(tv.HubReportedVersion, 10)
					}
					row(tv.ModuleID, strconv.FormatInt(tv.DesiredVersion, 10), strconv.FormatInt(tv.ReportedVersion, 10),
						strconv.Itoa(tv.QueuedReports), hubD, hubR)
				}
				for _, m := range st.Broker.Modules {
					if _, ok := links[m.ModuleID]; ok { // no cached twin
						row(m.ModuleID, "-", "-", "-", "-", "-")
					}
				}
				if err := t.Write(w); err != nil {
					return err
				}
				return printChildren(w, st.Children, now)
			})
		},
	}
	addMgmtSocketFlag(cmd)
	return cmd
}

// hubTwinsAsOf says how current the hub's twin versions in outpost
// status' table are: as of the last sync while connected (the hub answers
// each change at once), last seen and how long ago while offline.
func hubTwinsAsOf(st *mgmtclient.Status, now time.Time) string {
	known := false
	for _, tv := range st.Twins {
		known = known || !tv.HubSeenAt.IsZero()
	}
	switch {
	case !known && st.Connected:
		return "versions not known yet (no sync answer has carried a twin)"
	case !known:
		return "versions not known (offline since " + st.Since.UTC().Format(time.RFC3339) + ")"
	case st.Connected:
		return "versions as of the last sync, " + st.LastSync.UTC().Format(time.RFC3339) + " (connected: the hub answers each change)"
	}
	return "versions as last seen " + st.LastSync.UTC().Format(time.RFC3339) + ", " + humanDuration(now.Sub(st.LastSync)) +
		" old (offline since " + st.Since.UTC().Format(time.RFC3339) + ")"
}

// printChildren prints outpost status' table of child (leaf) devices.
func printChildren(w io.Writer, kids []mgmtclient.Child, now time.Time) error {
	if len(kids) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	t := NewTable("child device", "link", "last activity", "queued reports", "queued messages")
	for _, c := range kids {
		link := "connected " + humanDuration(now.Sub(c.Since))
		if !c.Connected {
			link = "disconnected " + humanDuration(now.Sub(c.Since)) + " ago"
		}
		last := "-"
		if !c.LastActivity.IsZero() {
			last = humanDuration(now.Sub(c.LastActivity)) + " ago"
		}
		t.Row(c.DeviceID, link, last, strconv.Itoa(c.QueuedReports), strconv.Itoa(c.QueuedMessages))
	}
	return t.Write(w)
}

// printDeviceCA prints the device CA's lines of outpost status.
func printDeviceCA(w io.Writer, ca *mgmtclient.DeviceCA) {
	if ca == nil {
		return
	}
	fmt.Fprintf(w, "device CA:  %s (%s), valid until %s\n", ca.File, ca.Subject, ca.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "            root SHA-256 %s (outpost daemon ca prints it)\n", ca.Fingerprint)
	if len(ca.BrokerNames) > 0 {
		fmt.Fprintf(w, "broker TLS: %s, valid until %s\n", strings.Join(ca.BrokerNames, ", "), ca.BrokerNotAfter.UTC().Format(time.RFC3339))
	}
}

// brokerCell is a module's link to the broker in outpost status.
func brokerCell(m mgmtclient.BrokerModule, ok bool, now time.Time) string {
	switch {
	case !ok:
		return "-" // not connected since the daemon started
	case m.Connected:
		return "connected " + humanDuration(now.Sub(m.Since))
	default:
		return "disconnected " + humanDuration(now.Sub(m.Since)) + " ago"
	}
}

// sentCell is the desired version the broker last sent a module.
func sentCell(m mgmtclient.BrokerModule, ok bool) string {
	if !ok || m.DesiredVersion == 0 {
		return "-"
	}
	return strconv.FormatInt(m.DesiredVersion, 10)
}

// checkResult is one line of outpost check.
type checkResult struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	Hint   string `json:"hint,omitempty"`
}

type checkOptions struct {
	ConnectionString string
	CAFile           string
	DataDir          string
	Runtime          string
	BrokerListen     string
	MgmtSocket       string
	DeviceCACert     string
	DeviceCAKey      string
	MinFreeBytes     uint64
}

func newCheckCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:         "check",
		Annotations: map[string]string{sectionAnnotation: "daemon"},
		Short:       "Check that this machine can run the daemon, one line per check",
		Long: `Check what the daemon needs, one line each with ✓ or ✗ and what to do:
the runtime is found and usable, the hub is reachable, the clock agrees with
the hub's (SAS tokens allow 5 minutes of skew), the data dir has disk space and
is private (0700, owned by the daemon's user), the broker port is free, and the
daemon answers on its management socket. It reads the daemon's configuration,
the same config file and env, and takes the daemon's flags: 'outpost check'
followed by the daemon's flags checks that daemon. It works whether the daemon
runs or not, and exits 1 when a check fails.`,
		Example: `  outpost check
  outpost check --config /etc/outpost/config.yaml -o json
  outpost check --connection-string "$DEVICE_CONNECTION_STRING" --ca hub-ca.pem --data ./device --runtime process`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := f.Config()
			opts := checkOptions{
				ConnectionString: deviceConnectionString(cmd, v), CAFile: v.GetString("ca"),
				DataDir: v.GetString("data"), Runtime: v.GetString("runtime"),
				BrokerListen: v.GetString("broker-listen"), MgmtSocket: v.GetString("mgmt-socket"),
				DeviceCACert: v.GetString("device-ca-cert"), DeviceCAKey: v.GetString("device-ca-key"),
				MinFreeBytes: 512 << 20,
			}
			results := runChecks(cmd.Context(), opts, f.Now)
			failed := 0
			for _, r := range results {
				if !r.OK {
					failed++
				}
			}
			err := f.Print(results, func(w io.Writer) error {
				for _, r := range results {
					mark := "✓"
					if !r.OK {
						mark = "✗"
					}
					line := fmt.Sprintf("%s %s: %s", mark, r.Name, r.Detail)
					if r.Hint != "" {
						line += " — " + r.Hint
					}
					fmt.Fprintln(w, line)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if failed > 0 {
				f.status("%d of %d checks failed", failed, len(results))
				return &SilentError{Code: ExitFailure}
			}
			return nil
		},
	}
	// The daemon's flags, so that the daemon's command line checks as it
	// is; those that change nothing checked are accepted but not shown.
	addDaemonFlags(cmd)
	for _, name := range []string{"gateway-hostname", "workload-dir", "restart-backoff", "restart-backoff-max", "restart-reset-after", "image-gc-age", "log-level"} {
		_ = cmd.Flags().MarkHidden(name)
	}
	return cmd
}

// runChecks runs every check of outpost check.
func runChecks(ctx context.Context, o checkOptions, now func() time.Time) []checkResult {
	var out []checkResult
	out = append(out, checkRuntime(ctx, o.Runtime))
	out = append(out, checkHub(ctx, o, now)...)
	out = append(out, checkDisk(o.DataDir, o.MinFreeBytes), checkDataDir(o.DataDir), checkDeviceCA(o, now()), checkBroker(o.BrokerListen), checkDaemon(ctx, o.MgmtSocket))
	return out
}

func checkRuntime(ctx context.Context, kind string) checkResult {
	r := checkResult{Name: "runtime"}
	dir, err := os.MkdirTemp("", "outpost-check")
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	defer os.RemoveAll(dir)
	rt, err := runtime.New(kind, dir)
	if err != nil {
		r.Detail = fmt.Sprintf("%s: %v", kind, err)
		r.Hint = "install runc and run as root, start docker, or use --runtime process"
		return r
	}
	if _, err := rt.List(ctx); err != nil {
		r.Detail = fmt.Sprintf("%s found but not usable: %v", rt.Name(), err)
		r.Hint = "check its installation, or use --runtime process"
		return r
	}
	r.OK = true
	r.Detail = rt.Name() + " found and usable"
	if kind == runtime.KindAuto || kind == "" {
		r.Detail += " (picked by auto)"
	}
	if !rt.Isolated() {
		r.Detail += "; it does not isolate modules (host processes), and any host process that may open a module's workload socket (DATA/workload/MODULE/workload.sock) can sign tokens as that module"
	}
	return r
}

// checkHub checks that the hub answers and that the clocks agree.
func checkHub(ctx context.Context, o checkOptions, now func() time.Time) []checkResult {
	hub := checkResult{Name: "hub"}
	skew := checkResult{Name: "clock"}
	if strings.TrimSpace(o.ConnectionString) == "" {
		hub.Detail = "no connection string"
		hub.Hint = "set connection-string in the config file, OUTPOST_CONNECTION_STRING or --hub"
		skew.Detail = "not checked: the hub is unknown"
		return []checkResult{hub, skew}
	}
	cs, err := identity.ParseConnectionString(o.ConnectionString)
	if err != nil {
		hub.Detail = err.Error()
		hub.Hint = "check the connection string"
		skew.Detail = "not checked: the hub is unknown"
		return []checkResult{hub, skew}
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			hub.Detail = fmt.Sprintf("read the CA file: %v", err)
			hub.Hint = "check ca in the config file, OUTPOST_CA or --ca"
			skew.Detail = "not checked: the hub did not answer"
			return []checkResult{hub, skew}
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tlsCfg.RootCAs = pool
	}
	scheme := "https"
	if cs.UseInsecureHTTP {
		scheme = "http"
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+cs.HostName+"/", nil)
	sent := now()
	resp, err := hc.Do(req)
	if err != nil {
		hub.Detail = fmt.Sprintf("%s does not answer: %v", cs.HostName, err)
		hub.Hint = "check the network, the host name and port, and the CA (--ca); the daemon runs on offline meanwhile"
		skew.Detail = "not checked: the hub did not answer"
		return []checkResult{hub, skew}
	}
	resp.Body.Close()
	got := now()
	hub.OK = true
	hub.Detail = fmt.Sprintf("%s answers (%s)", cs.HostName, got.Sub(sent).Round(time.Millisecond))
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		skew.Detail = "the hub sent no Date header"
		skew.OK = true
		return []checkResult{hub, skew}
	}
	mid := sent.Add(got.Sub(sent) / 2)
	d := mid.Sub(date)
	if d < 0 {
		d = -d
	}
	if d > 5*time.Minute {
		skew.Detail = fmt.Sprintf("this clock is %s off the hub's: SAS tokens allow 5 minutes", d.Round(time.Second))
		skew.Hint = "sync the clock (timedatectl set-ntp true)"
		return []checkResult{hub, skew}
	}
	skew.OK = true
	skew.Detail = fmt.Sprintf("within %s of the hub's", (d + time.Second).Round(time.Second))
	return []checkResult{hub, skew}
}

// existingParent is dir or its nearest parent that exists.
func existingParent(dir string) string {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || d == filepath.Dir(d) {
			return d
		}
	}
}

func checkDisk(dir string, minFree uint64) checkResult {
	r := checkResult{Name: "disk"}
	at := existingParent(dir)
	free, err := diskFree(at)
	if err != nil {
		r.Detail = fmt.Sprintf("%s: %v", at, err)
		return r
	}
	r.Detail = fmt.Sprintf("%s free under %s", humanBytes(free), at)
	if free < minFree {
		r.Hint = fmt.Sprintf("free some space: images and logs need at least %s", humanBytes(minFree))
		return r
	}
	r.OK = true
	return r
}

func humanBytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

func checkDataDir(dir string) checkResult {
	r := checkResult{Name: "data dir"}
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		parent := existingParent(dir)
		if ok, werr := writable(parent); werr == nil && ok {
			r.OK = true
			r.Detail = fmt.Sprintf("%s does not exist yet: the daemon creates it (0700)", dir)
			return r
		}
		r.Detail = fmt.Sprintf("%s does not exist and %s is not writable", dir, parent)
		r.Hint = "run the daemon as root, or pass --data with a directory you own"
		return r
	}
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	if !fi.IsDir() {
		r.Detail = dir + " is not a directory"
		r.Hint = "pass --data with a directory"
		return r
	}
	var problems []string
	if perm := fi.Mode().Perm(); perm != 0o700 {
		problems = append(problems, fmt.Sprintf("mode %04o, want 0700", perm))
	}
	if uid, ok := fileOwner(fi); ok && uid != os.Geteuid() {
		problems = append(problems, fmt.Sprintf("owned by uid %d, not by us (uid %d)", uid, os.Geteuid()))
	}
	if len(problems) > 0 {
		r.Detail = dir + ": " + strings.Join(problems, "; ")
		r.Hint = fmt.Sprintf("it holds the device's keys: chmod 700 %s && chown $(id -u) %s", dir, dir)
		return r
	}
	r.OK = true
	r.Detail = dir + " is 0700 and ours"
	return r
}

// checkDeviceCA checks the device CA given (--device-ca-cert/--device-ca-key)
// or the one the daemon made in DATA/ca.
func checkDeviceCA(o checkOptions, now time.Time) checkResult {
	r := checkResult{Name: "device CA"}
	cert, key := o.DeviceCACert, o.DeviceCAKey
	given := cert != "" || key != ""
	if !given {
		cert, key = filepath.Join(o.DataDir, "ca", deviceca.CertFile), filepath.Join(o.DataDir, "ca", deviceca.KeyFile)
		if _, err := os.Stat(cert); errors.Is(err, fs.ErrNotExist) {
			r.OK = true
			r.Detail = "none yet: the daemon makes one in " + filepath.Dir(cert) + " on first start"
			return r
		}
	}
	if cert == "" || key == "" {
		r.Detail = "--device-ca-cert and --device-ca-key go together"
		r.Hint = "give both, or neither for a CA the daemon makes itself"
		return r
	}
	ca, err := deviceca.Load(cert, key, now)
	if err != nil {
		r.Detail = err.Error()
		r.Hint = "give a CA certificate and its unencrypted private key (PEM)"
		if !given {
			r.Hint = "remove " + filepath.Dir(cert) + " to have the daemon make a new CA (modules then trust the new one)"
		}
		return r
	}
	r.OK = true
	r.Detail = fmt.Sprintf("%s (%s), valid until %s, SHA-256 fingerprint %s", cert, ca.Cert.Subject.CommonName, ca.Cert.NotAfter.UTC().Format(time.RFC3339), deviceca.Fingerprint(ca.Cert))
	if root, err := deviceca.ReadRoot(cert); err == nil && root.Cert != root.CA {
		r.Detail += fmt.Sprintf("; its root %s, SHA-256 fingerprint %s", root.Cert.Subject.CommonName, deviceca.Fingerprint(root.Cert))
	}
	return r
}

func writable(dir string) (bool, error) {
	f, err := os.CreateTemp(dir, ".outpost-check-*")
	if err != nil {
		return false, err
	}
	name := f.Name()
	f.Close()
	return true, os.Remove(name)
}

func checkBroker(addr string) checkResult {
	r := checkResult{Name: "broker port"}
	if addr == "" {
		r.OK, r.Detail = true, "no broker address set"
		return r
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		r.Detail = fmt.Sprintf("%s is not free: %v", addr, err)
		r.Hint = "stop what listens there (ss -ltnp), or set broker-listen to another address"
		return r
	}
	l.Close()
	r.OK, r.Detail = true, addr+" is free"
	return r
}

func checkDaemon(ctx context.Context, socket string) checkResult {
	r := checkResult{Name: "daemon"}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c := mgmtclient.New(socket)
	st, err := c.Status(ctx)
	if err != nil {
		r.Detail = err.Error()
		var ue *mgmtclient.UnavailableError
		if errors.As(err, &ue) {
			r.Detail = fmt.Sprintf("no daemon answers on %s", socket)
			r.Hint = ue.Hint()
		}
		return r
	}
	r.OK = true
	r.Detail = fmt.Sprintf("answers on %s (device %s, runtime %s)", socket, st.DeviceID, st.Runtime)
	return r
}
