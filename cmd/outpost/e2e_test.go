package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// outpost is the binary under test, built once by TestMain.
var outpost string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "outpost-e2e-")
	if err != nil {
		panic(err)
	}
	outpost = filepath.Join(dir, "outpost")
	if out, err := exec.Command("go", "build", "-o", outpost, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build outpost: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// hubProcess is `outpost hub serve` running as a child process.
type hubProcess struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	addr   string
	cs     string
	ca     string
}

func startHub(t *testing.T, data string) *hubProcess {
	t.Helper()
	cmd := exec.Command(outpost, "hub", "serve", "--data", data, "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "OUTPOST_CONFIG=/dev/null")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	hp := &hubProcess{cmd: cmd, stderr: &bytes.Buffer{}}
	listening := regexp.MustCompile(`hub listening on https://(\S+) `)
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(20 * time.Second)
	for hp.addr == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("hub exited before listening: %s", hp.stderr)
			}
			hp.stderr.WriteString(l + "\n")
			if m := listening.FindStringSubmatch(l); m != nil {
				hp.addr = m[1]
			}
		case <-deadline:
			t.Fatalf("hub did not start: %s", hp.stderr)
		}
	}
	go func() {
		for l := range lines {
			_ = l // drain, so the hub never blocks on stderr
		}
	}()
	// The first start prints the owner connection string on stdout, right
	// after the listening line; later starts print nothing there.
	outLines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case outLines <- strings.TrimSpace(sc.Text()):
			default:
			}
		}
	}()
	select {
	case hp.cs = <-outLines:
	case <-time.After(2 * time.Second):
	}
	hp.ca = filepath.Join(data, "ca.pem")
	return hp
}

// cli runs the outpost binary against the hub and returns exit code and output.
func (hp *hubProcess) cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(outpost, args...)
	cmd.Env = append(os.Environ(), "OUTPOST_CONFIG=/dev/null", "OUTPOST_CONNECTION_STRING="+hp.cs, "OUTPOST_CA="+hp.ca)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

// TestHubProcess drives a real `outpost hub serve` with the real CLI:
// identities, twins, a deployment, the error exit codes, and a clean stop
// on SIGTERM.
func TestHubProcess(t *testing.T) {
	data := t.TempDir()
	hp := startHub(t, data)
	if !strings.HasPrefix(hp.cs, "HostName=localhost:") || !strings.Contains(hp.cs, "SharedAccessKeyName=owner") {
		t.Fatalf("owner connection string on stdout: %q", hp.cs)
	}
	if fi, err := os.Stat(filepath.Join(data, "credentials.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v", fi, err)
	}

	steps := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"hub", "credentials", "--data", data, "-o", "json"}, 0, `"connectionString": "` + hp.cs},
		{[]string{"device", "create", "edge-1"}, 0, "HostName=localhost:"},
		{[]string{"module", "create", "edge-1/tempsensor"}, 0, "ModuleId=tempsensor"},
		{[]string{"twin", "patch", "edge-1/tempsensor", "--desired", `{"interval":7}`}, 0, ""},
		{[]string{"twin", "get", "edge-1/tempsensor", "-o", "json"}, 0, `"interval": 7`},
		{[]string{"deploy", "edge-1", "-f", "../../fixtures/manifests/native.yaml", "--no-resolve"}, 0, "deployed to edge-1"},
		{[]string{"twin", "get", "edge-1/$edgeAgent", "-o", "json"}, 0, `"schemaVersion"`},
		{[]string{"twin", "get", "edge-1/$agent", "-o", "json"}, 0, `"moduleId": "$edgeAgent"`}, // the old name, read as the new
		{[]string{"twin", "get", "edge-1/$edgeHub", "-o", "json"}, 0, `"storeAndForwardConfiguration"`},
		{[]string{"device", "show", "nope"}, 3, "not found"},
		{[]string{"twin", "patch", "edge-1/tempsensor", "--desired", `{"x":1}`, "--if-match", "AAAAAAAAAAE="}, 4, ""},
		{[]string{"deploy", "edge-1", "-f", "../../fixtures/manifests/broken/bad-restart-policy.yaml"}, 1, "restartPolicy"},
		{[]string{"device", "create"}, 2, "usage"},
	}
	for _, s := range steps {
		code, out, errOut := hp.cli(t, s.args...)
		if code != s.code || !strings.Contains(out+errOut, s.want) {
			t.Errorf("outpost %s: exit %d (want %d)\nstdout: %s\nstderr: %s\nwant %q", strings.Join(s.args, " "), code, s.code, out, errOut, s.want)
		}
	}

	// SIGTERM: the hub drains and exits 0, and its data is intact on restart.
	start := time.Now()
	if err := hp.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- hp.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("hub exit after SIGTERM: %v", err)
		}
		t.Logf("hub stopped %v after SIGTERM", time.Since(start))
	case <-time.After(15 * time.Second):
		t.Fatal("hub did not stop on SIGTERM")
	}
	hp2 := startHub(t, data)
	if hp2.cs != "" {
		t.Errorf("a second start printed the owner connection string again: %q", hp2.cs)
	}
	hp2.cs = hp.cs
	hp2.cs = strings.Replace(hp2.cs, "HostName="+strings.Split(strings.TrimPrefix(hp.cs, "HostName="), ";")[0], "HostName=localhost:"+strings.Split(hp2.addr, ":")[1], 1)
	code, out, errOut := hp2.cli(t, "twin", "get", "edge-1/tempsensor", "-o", "json")
	if code != 0 {
		t.Fatalf("after restart: %d %s", code, errOut)
	}
	var tw struct {
		Properties struct {
			Desired map[string]any `json:"desired"`
		} `json:"properties"`
	}
	if err := json.Unmarshal([]byte(out), &tw); err != nil || tw.Properties.Desired["interval"] == nil {
		t.Fatalf("twin after restart: %v %s", err, out)
	}
}
