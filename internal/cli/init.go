package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/sdk"
)

type initOptions struct {
	Dir      string
	Name     string
	Registry string // host[:port] of the images; "" for the default (or, adding a module, the solution's)
}

// initResult is what init prints with -o json.
type initResult struct {
	Dir     string   `json:"dir"`
	Module  string   `json:"module"`
	Files   []string `json:"files"`
	Updated []string `json:"updated,omitempty"` // deployment.yaml, when a module was added to a solution
}

// initNameRE is what a scaffolded module may be called: a Go module path, a
// module id and an image repository all at once.
var initNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

func newInitCmd(f *Factory) *cobra.Command {
	opts := &initOptions{}
	cmd := &cobra.Command{
		Use:   "init [DIR]",
		Short: "Scaffold a solution with one Go module and a deployment",
		Long: `Make a solution in DIR (default: the current directory): a module in
modules/NAME (module.yaml, go.mod, go.sum and main.go: a Go program that
prints a simulated temperature every INTERVAL seconds, reports it and its
interval in its module twin, takes a desired "interval" without a restart,
and stops cleanly on SIGTERM), with the Go SDK it builds against in
modules/NAME/outpost-sdk, and deployment.yaml, a native deployment manifest
that runs it.

module.yaml builds the module for linux/amd64, linux/arm64 and linux/arm/v7
and names the image localhost:5000/NAME:1.0 (outpost registry serve's
address), or REGISTRY/NAME:1.0 with --registry REGISTRY, in module.yaml and in
deployment.yaml alike.

In a solution that has a deployment.yaml already, init adds the module: it
writes modules/NAME and adds NAME to deployment.yaml's modules, keeping the
file's comments and order. Its image is on the registry of the modules there
unless --registry says otherwise.

Existing files are never overwritten: init stops before writing anything if
one is in the way (or if deployment.yaml has a module NAME already).`,
		Example: `  outpost init                     # here, a module named tempsensor
  outpost init ./edge --name pump  # ./edge/modules/pump
  outpost init && outpost build && outpost push
  outpost init --registry 127.0.0.1:5001  # images at 127.0.0.1:5001/NAME
  outpost init . --name pump       # add a module to this solution`,
		Args: atMostOneArg("DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Dir = "."
			if len(args) == 1 {
				opts.Dir = args[0]
			}
			if !initNameRE.MatchString(opts.Name) {
				return flagErrorf("--name %q: use 1 to 63 lower-case letters, digits, '-' or '_', starting with a letter (it names the Go module, the module id and the image)", opts.Name)
			}
			if opts.Registry != "" {
				if err := checkRegistryFlag(opts.Registry); err != nil {
					return err
				}
			}
			return initRun(f, opts)
		},
	}
	cmd.Flags().StringVar(&opts.Name, "name", "tempsensor", "the module's name")
	cmd.Flags().StringVar(&opts.Registry, "registry", "", "registry HOST[:PORT] of the module's image, in module.yaml and deployment.yaml (default localhost:5000)")
	return cmd
}

func initRun(f *Factory, opts *initOptions) error {
	mod := filepath.Join("modules", opts.Name)
	files := []struct{ path, content string }{
		{filepath.Join(mod, "module.yaml"), initModuleYAML},
		{filepath.Join(mod, "go.mod"), initGoMod},
		{filepath.Join(mod, "go.sum"), initGoSum},
		{filepath.Join(mod, "main.go"), initMainGo},
		{"deployment.yaml", initDeploymentYAML},
	}
	// A solution there already: add the module to its deployment.
	add, err := initAddition(opts)
	if err != nil {
		return err
	}
	if add != nil {
		files = files[:len(files)-1] // deployment.yaml is edited, not written
	}
	registry := opts.Registry
	if registry == "" {
		registry = initDefaultRegistry
		if add != nil && add.registry != "" {
			registry = add.registry
		}
	}
	var inTheWay []string
	paths := []string{filepath.Join(mod, sdk.Dir)}
	for _, file := range files {
		paths = append(paths, file.path)
	}
	for _, path := range paths {
		p := filepath.Join(opts.Dir, path)
		if _, err := os.Lstat(p); err == nil {
			inTheWay = append(inTheWay, p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("init: %w", err)
		}
	}
	if len(inTheWay) > 0 {
		verb := "exist"
		if len(inTheWay) == 1 {
			verb = "exists"
		}
		return &ExitError{
			Code: ExitFailure,
			Err:  fmt.Errorf("init: %s already %s; init writes nothing over existing files", strings.Join(inTheWay, ", "), verb),
			Hint: "Pick another directory or --name, or move those files away.",
		}
	}
	if add != nil && add.conflict != nil {
		return add.conflict
	}
	res := initResult{Dir: opts.Dir, Module: opts.Name}
	for _, file := range files {
		p := filepath.Join(opts.Dir, file.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("init: %w", err)
		}
		content := initRender(file.content, opts.Name, registry)
		// O_EXCL: a file that appeared since the check is not overwritten.
		fh, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return fmt.Errorf("init: %w", err)
		}
		_, err = io.WriteString(fh, content)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("init: %w", err)
		}
		res.Files = append(res.Files, p)
	}
	// The Go SDK the module builds against (its go.mod's replace).
	sdkDir := filepath.Join(opts.Dir, mod, sdk.Dir)
	if err := sdk.WriteModule(sdkDir); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	res.Files = append(res.Files, sdkDir+string(filepath.Separator))
	if add != nil {
		if err := add.write(opts.Name, registry); err != nil {
			return fmt.Errorf("init: %w", err)
		}
		res.Updated = append(res.Updated, add.path)
	}
	if err := f.Print(res, func(w io.Writer) error {
		for _, p := range res.Files {
			if _, err := fmt.Fprintf(w, "created %s\n", p); err != nil {
				return err
			}
		}
		for _, p := range res.Updated {
			if _, err := fmt.Fprintf(w, "added %s to %s\n", opts.Name, p); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	serve := ""
	if registry == initDefaultRegistry {
		serve = " (outpost registry serve runs one there)"
	}
	fmt.Fprintf(f.IO.ErrOut, "Next: outpost build %s, then push it to the registry on %s%s (outpost push) and deploy it: outpost deploy DEVICE -f %s\n",
		opts.Dir, registry, serve, filepath.Join(opts.Dir, "deployment.yaml"))
	return nil
}

// The scaffold. {{NAME}} is the module's name. fixtures/modules/tempsensor
// is what it makes for --name tempsensor (a test keeps them the same).
const initModuleYAML = `# How outpost builds this module's image (outpost build, in this directory).
name: {{NAME}}
repository: localhost:5000/{{NAME}}
tag: "1.0"
platforms: [linux/amd64, linux/arm64, linux/arm/v7]
base: scratch
build:
  go: .                       # cross-compiled per platform, CGO off, -trimpath
entrypoint: ["/{{NAME}}"]
env:
  INTERVAL: "5"               # seconds between readings
`

const initGoMod = `module {{NAME}}

go 1.26.0

require github.com/outpost-edge/outpost v0.0.0

require (
	github.com/eclipse/paho.mqtt.golang v1.5.1 // indirect
	github.com/gorilla/websocket v1.5.3 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sync v0.25.0 // indirect
)

// The Go SDK, as the outpost that made this module wrote it (outpost init):
// modules build against that copy, offline.
replace github.com/outpost-edge/outpost => ./outpost-sdk
`

// initGoSum is the checksums of the SDK's requirements.
const initGoSum = `github.com/eclipse/paho.mqtt.golang v1.5.1 h1:/VSOv3oDLlpqR2Epjn1Q7b2bSTplJIeV2ISgCl2W7nE=
github.com/eclipse/paho.mqtt.golang v1.5.1/go.mod h1:1/yJCneuyOoCOzKSsOTUc0AJfpsItBGWvYpBLimhArU=
github.com/gorilla/websocket v1.5.3 h1:saDtZ6Pbx/0u+bgYQ3q96pZgCzfhKXGPqt7kZ72aNNg=
github.com/gorilla/websocket v1.5.3/go.mod h1:YR8l580nyteQvAITg2hZ9XVh4b55+EU/adAjf1fMHhE=
golang.org/x/net v0.62.0 h1:18ELalfM5+XNRwzM2nYqXsZQ9ByS1uhj2O/U7+5jqRY=
golang.org/x/net v0.62.0/go.mod h1:WgDCOTH8iwtB66T4/GfI94AHo/hhdb7Hah9NDseQfiI=
golang.org/x/sync v0.25.0 h1:dJnifr0nMV8/SBnBvdo4eSGGnrc3O4FFx6IqvtLcmRs=
golang.org/x/sync v0.25.0/go.mod h1:sUUOizhqBxiL6pEWpqNLUiaJn1ShEbZ6BBqskPbjZm0=
`

const initMainGo = `// Command {{NAME}} is an outpost module: it prints a simulated
// temperature reading as one JSON line every INTERVAL seconds (default 5),
// in the shape of Azure IoT Edge's SimulatedTemperatureSensor, until it is
// stopped with SIGTERM or Ctrl-C.
//
// Run by the outpost daemon, it also reads its module twin through the Go
// SDK (sdk/moduleclient): it reports its interval and latest reading in
// reported properties, and takes a desired "interval" (seconds) at once,
// without a restart.
//
//	INTERVAL=2 {{NAME}}      # a reading every 2 s
//	{{NAME}} -once           # one reading, then exit
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/outpost-edge/outpost/sdk/moduleclient"
)

func main() {
	once := flag.Bool("once", false, "print one reading and exit")
	flag.Parse()
	interval, err := parseInterval(os.Getenv("INTERVAL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "{{NAME}}: INTERVAL:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	start := time.Now()
	out := json.NewEncoder(os.Stdout)
	if *once {
		if err := out.Encode(read(start, start)); err != nil {
			os.Exit(1)
		}
		return
	}
	// Under the daemon, follow the twin; run alone, just print.
	intervals := make(chan time.Duration, 1)
	reports := make(chan map[string]any, 1)
	if os.Getenv(moduleclient.EnvWorkloadURI) != "" {
		go twin(ctx, intervals, reports)
	}
	fmt.Fprintf(os.Stderr, "{{NAME}}: a reading every %s\n", interval)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		reading := read(start, time.Now())
		if err := out.Encode(reading); err != nil {
			fmt.Fprintln(os.Stderr, "{{NAME}}:", err)
			os.Exit(1)
		}
		latest(reports, map[string]any{"interval": interval.Seconds(), "reading": reading})
		select {
		case <-ctx.Done():
			fmt.Fprintln(os.Stderr, "{{NAME}}: stopping")
			return
		case d := <-intervals:
			if d != interval {
				interval = d
				tick.Reset(interval)
				fmt.Fprintf(os.Stderr, "{{NAME}}: desired interval: a reading every %s\n", interval)
			}
		case <-tick.C:
		}
	}
}

// twin connects to the daemon's broker, applies the desired interval (now
// and whenever it changes) and reports what the loop hands it, the latest
// only when reports come faster than the daemon acknowledges them.
func twin(ctx context.Context, intervals chan time.Duration, reports chan map[string]any) {
	c, err := moduleclient.NewFromEnvironment(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "{{NAME}}: no module twin:", err)
		return
	}
	defer c.Close()
	desired := func(v any) {
		if v == nil {
			return
		}
		d, err := parseInterval(fmt.Sprint(v))
		if err != nil {
			fmt.Fprintf(os.Stderr, "{{NAME}}: desired interval %v ignored: %v\n", v, err)
			return
		}
		latest(intervals, d)
	}
	c.OnDesired(func(patch map[string]any, version int64) { desired(patch["interval"]) })
	tw, err := c.Twin(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "{{NAME}}: read the twin:", err)
	} else {
		desired(tw.Desired.Values["interval"])
	}
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-reports:
			if _, err := c.UpdateReported(ctx, r); err != nil && ctx.Err() == nil {
				fmt.Fprintln(os.Stderr, "{{NAME}}: report:", err)
			}
		}
	}
}

// latest puts v in ch (of capacity 1), replacing what is waiting there.
func latest[T any](ch chan T, v T) {
	for {
		select {
		case ch <- v:
			return
		default:
			select {
			case <-ch:
			default:
			}
		}
	}
}

// parseInterval reads seconds ("5", "0.5") or a Go duration ("500ms"); ""
// is the default, 5 s.
func parseInterval(s string) (time.Duration, error) {
	if s == "" {
		return 5 * time.Second, nil
	}
	if secs, err := strconv.ParseFloat(s, 64); err == nil && secs > 0 {
		return time.Duration(secs * float64(time.Second)), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("%q is not a positive number of seconds", s)
}

// read simulates the sensor at now, as a message with the field names of
// IoT Edge's SimulatedTemperatureSensor: the machine warms and cools on a
// ten-minute cycle between 21 and 99 °C, with some noise; the room stays
// near 21 °C.
func read(start, now time.Time) map[string]any {
	phase := now.Sub(start).Seconds() / 600 * 2 * math.Pi
	machine := round(60 - 39*math.Cos(phase) + rand.NormFloat64()*0.5)
	return map[string]any{
		"machine": map[string]any{
			"temperature": machine,
			"pressure":    round(1 + (machine-21)/78*9),
		},
		"ambient": map[string]any{
			"temperature": round(21 + rand.NormFloat64()*0.2),
			"humidity":    24 + rand.IntN(3),
		},
		"timeCreated": now.UTC().Format(time.RFC3339Nano),
	}
}

func round(x float64) float64 { return math.Round(x*100) / 100 }
`

const initDeploymentYAML = `# A native outpost deployment: outpost deploy DEVICE -f deployment.yaml
schemaVersion: "1.0"
modules:
  {{NAME}}:
    image: localhost:5000/{{NAME}}:1.0
    version: "1.0"            # change it to re-create the module
    status: running
    restartPolicy: always
    startupOrder: 1
    env:
      INTERVAL: "5"
    desired:
      interval: 5
`
