// Command devbench times the inner loop scripts/bench/devloop.sh compares:
// from the save of a one-line change to the sample module's main.go to the
// new instance's first log line carrying that change.
//
//	go run ./scripts/bench/devbench -mode gobuild -dir SOLUTION [-rounds 5]
//	go run ./scripts/bench/devbench -mode dev -outpost BIN -dir SOLUTION -runtime process|runc [-rounds 5]
//	go run ./scripts/bench/devbench -mode docker -outpost BIN -dir SOLUTION -registry HOST:PORT \
//	    -device ID -mgmt-socket SOCK -dockerfile FILE [-rounds 5]
//
// gobuild: `go build` of the module alone (CGO_ENABLED=0 -trimpath), after
// each change: the reference. dev: `outpost dev` runs; each change is
// timed until its line appears in dev's output, and dev's own account of the
// round's `go build` is kept. docker: as IoT Edge developers do it: docker
// build (multi-stage Dockerfile) with a new tag, docker push, `outpost
// deploy` of a manifest with that tag (the device's daemon, on the docker
// runtime, re-creates the module), timed until the line appears in the
// module's logs (the daemon's management API, followed). Each prints one
// line a round and a last line "median …", in milliseconds.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/outpost-edge/outpost/internal/mgmtclient"
)

// original is the line of the scaffold's main.go each round changes.
const original = "tempsensor: a reading every"

var (
	mode       = flag.String("mode", "dev", "gobuild, dev or docker")
	bin        = flag.String("outpost", "outpost", "the outpost binary")
	dir        = flag.String("dir", "", "the solution (outpost init's)")
	rt         = flag.String("runtime", "process", "dev: the runtime")
	rounds     = flag.Int("rounds", 5, "changes timed")
	registry   = flag.String("registry", "", "docker: the registry to push to")
	device     = flag.String("device", "", "docker: the device to deploy to")
	mgmtSocket = flag.String("mgmt-socket", "", "docker: the device daemon's management socket")
	dockerfile = flag.String("dockerfile", "", "docker: the multi-stage Dockerfile")
)

func main() {
	log.SetFlags(0)
	flag.Parse()
	if *dir == "" {
		log.Fatal("devbench: -dir SOLUTION is required")
	}
	mainGo := filepath.Join(*dir, "modules", "tempsensor", "main.go")
	src, err := os.ReadFile(mainGo)
	if err != nil {
		log.Fatal(err)
	}
	if !bytes.Contains(src, []byte(original)) {
		log.Fatalf("devbench: %s lacks %q", mainGo, original)
	}
	// change writes main.go with round n's marker and returns it.
	change := func(n int) string {
		marker := fmt.Sprintf("tempsensor: reading %d-%d every", n, time.Now().UnixNano()%1e6)
		if err := os.WriteFile(mainGo, bytes.ReplaceAll(src, []byte(original), []byte(marker)), 0o644); err != nil {
			log.Fatal(err)
		}
		return marker
	}
	defer os.WriteFile(mainGo, src, 0o644)
	var totals, builds []time.Duration
	switch *mode {
	case "gobuild":
		totals = goBuild(change)
	case "dev":
		totals, builds = dev(change)
	case "docker":
		totals, builds = docker(change)
	default:
		log.Fatalf("devbench: -mode %q: gobuild, dev or docker", *mode)
	}
	line := fmt.Sprintf("median %d", median(totals))
	if len(builds) > 0 {
		line += fmt.Sprintf(" build %d", median(builds))
	}
	fmt.Println(line)
}

func median(ds []time.Duration) int64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2].Milliseconds()
	}
	return (s[len(s)/2-1] + s[len(s)/2]).Milliseconds() / 2
}

func goBuild(change func(int) string) (totals []time.Duration) {
	out := filepath.Join(os.TempDir(), fmt.Sprintf("devbench-%d", os.Getpid()))
	defer os.Remove(out)
	for n := 0; n <= *rounds; n++ {
		change(n)
		t0 := time.Now()
		cmd := exec.Command("go", "build", "-trimpath", "-o", out, ".")
		cmd.Dir = filepath.Join(*dir, "modules", "tempsensor")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			log.Fatalf("go build: %v\n%s", err, b)
		}
		took := time.Since(t0)
		if n == 0 {
			continue // warm-up
		}
		fmt.Printf("round %d: %d\n", n, took.Milliseconds())
		totals = append(totals, took)
	}
	return totals
}

// lines sends each line of r to the returned channel.
func lines(r io.Reader, echo io.Writer) <-chan string {
	ch := make(chan string, 1024)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if echo != nil {
				fmt.Fprintln(echo, sc.Text())
			}
			ch <- sc.Text()
		}
	}()
	return ch
}

// waitLine reads ch until a line holds want.
func waitLine(ch <-chan string, want string) string {
	timeout := time.After(5 * time.Minute)
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				log.Fatalf("devbench: output ended before %q", want)
			}
			if strings.Contains(l, want) {
				return l
			}
		case <-timeout:
			log.Fatalf("devbench: no %q in 5 minutes", want)
		}
	}
}

var goBuildRE = regexp.MustCompile(`\(go build ([0-9.]+)(ms|s)\)`)

func dev(change func(int) string) (totals, builds []time.Duration) {
	log := log.New(os.Stderr, "", 0)
	devLog, err := os.Create(filepath.Join(os.TempDir(), fmt.Sprintf("devbench-dev-%d.log", os.Getpid())))
	if err != nil {
		log.Fatal(err)
	}
	defer devLog.Close()
	cmd := exec.Command(*bin, "dev", *dir, "--runtime", *rt)
	cmd.Env = append(os.Environ(), "OUTPOST_CONFIG=/dev/null", "NO_COLOR=1")
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
	}()
	out, status := lines(stdout, nil), lines(stderr, devLog)
	waitLine(out, original)
	waitLine(status, "watching ")
	// The first round's own account (a new solution: its first instance).
	waitLine(status, "save → first line")
	for n := 1; n <= *rounds; n++ {
		time.Sleep(time.Second) // the instance settles
		t0 := time.Now()
		marker := change(n)
		waitLine(out, marker)
		took := time.Since(t0)
		st := waitLine(status, "save → first line")
		var gb time.Duration
		if m := goBuildRE.FindStringSubmatch(st); m != nil {
			gb, _ = time.ParseDuration(m[1] + m[2])
		}
		fmt.Printf("round %d: %d (go build %d) | %s\n", n, took.Milliseconds(), gb.Milliseconds(), strings.TrimPrefix(st, "• "))
		totals, builds = append(totals, took), append(builds, gb)
	}
	return totals, builds
}

func docker(change func(int) string) (totals, builds []time.Duration) {
	if *registry == "" || *device == "" || *mgmtSocket == "" || *dockerfile == "" {
		log.Fatal("devbench: -mode docker needs -registry, -device, -mgmt-socket and -dockerfile")
	}
	run := func(name string, args ...string) {
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "OUTPOST_CONFIG=/dev/null")
		if b, err := cmd.CombinedOutput(); err != nil {
			log.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
		}
	}
	modDir := filepath.Join(*dir, "modules", "tempsensor")
	manifest := filepath.Join(os.TempDir(), fmt.Sprintf("devbench-%d.json", os.Getpid()))
	defer os.Remove(manifest)
	mc := mgmtclient.New(*mgmtSocket)
	for n := 0; n <= *rounds; n++ {
		if n > 0 {
			time.Sleep(time.Second)
		}
		t0 := time.Now()
		marker := change(n)
		ref := fmt.Sprintf("%s/tempsensor:dev-%d", *registry, n)
		run("docker", "build", "-q", "--network", "none", "-t", ref, "-f", *dockerfile, modDir)
		built := time.Since(t0)
		run("docker", "push", "-q", ref)
		m := fmt.Sprintf(`{"schemaVersion":"1.0","modules":{"tempsensor":{"image":%q,"version":"1.0","restartPolicy":"always","env":{"INTERVAL":"5"}}}}`, ref)
		if err := os.WriteFile(manifest, []byte(m), 0o644); err != nil {
			log.Fatal(err)
		}
		// IoT Edge deploys tags; so does this loop.
		run(*bin, "deploy", *device, "-f", manifest, "--no-resolve")
		waitLog(mc, marker, t0)
		took := time.Since(t0)
		if n == 0 {
			continue // warm-up: the first deployment
		}
		fmt.Printf("round %d: %d (docker build %d)\n", n, took.Milliseconds(), built.Milliseconds())
		totals, builds = append(totals, took), append(builds, built)
	}
	return totals, builds
}

// waitLog follows the module's logs from since until a line holds want,
// across the instance's re-creation.
func waitLog(mc *mgmtclient.Client, want string, since time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for ctx.Err() == nil {
		rc, err := mc.Logs(ctx, "tempsensor", mgmtclient.LogOptions{Follow: true, Since: since})
		if err == nil {
			sc := bufio.NewScanner(rc)
			for sc.Scan() {
				if strings.Contains(sc.Text(), want) {
					rc.Close()
					return
				}
			}
			rc.Close()
		}
		time.Sleep(20 * time.Millisecond)
	}
	log.Fatalf("devbench: no %q in the module's logs in 5 minutes", want)
}
