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
)

type initOptions struct {
	Dir  string
	Name string
}

// initResult is what init prints with -o json.
type initResult struct {
	Dir    string   `json:"dir"`
	Module string   `json:"module"`
	Files  []string `json:"files"`
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
modules/NAME (module.yaml, go.mod and main.go: a Go program that prints a
simulated temperature every INTERVAL seconds and stops cleanly on SIGTERM),
and deployment.yaml, a native deployment manifest that runs it.

module.yaml builds the module for linux/amd64, linux/arm64 and linux/arm/v7
and names the image localhost:5000/NAME:1.0. Existing files are never
overwritten: init stops before writing anything if one is in the way.`,
		Example: `  outpost init                     # here, a module named tempsensor
  outpost init ./edge --name pump  # ./edge/modules/pump
  outpost init && outpost build && outpost push`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return flagErrorf("%s takes at most one DIR (got %d arguments)", cmd.CommandPath(), len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Dir = "."
			if len(args) == 1 {
				opts.Dir = args[0]
			}
			if !initNameRE.MatchString(opts.Name) {
				return flagErrorf("--name %q: use 1 to 63 lower-case letters, digits, '-' or '_', starting with a letter (it names the Go module, the module id and the image)", opts.Name)
			}
			return initRun(f, opts)
		},
	}
	cmd.Flags().StringVar(&opts.Name, "name", "tempsensor", "the module's name")
	return cmd
}

func initRun(f *Factory, opts *initOptions) error {
	mod := filepath.Join("modules", opts.Name)
	files := []struct{ path, content string }{
		{filepath.Join(mod, "module.yaml"), initModuleYAML},
		{filepath.Join(mod, "go.mod"), initGoMod},
		{filepath.Join(mod, "main.go"), initMainGo},
		{"deployment.yaml", initDeploymentYAML},
	}
	var inTheWay []string
	for _, file := range files {
		p := filepath.Join(opts.Dir, file.path)
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
	res := initResult{Dir: opts.Dir, Module: opts.Name}
	for _, file := range files {
		p := filepath.Join(opts.Dir, file.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("init: %w", err)
		}
		content := strings.ReplaceAll(file.content, "{{NAME}}", opts.Name)
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
	if err := f.Print(res, func(w io.Writer) error {
		for _, p := range res.Files {
			if _, err := fmt.Fprintf(w, "created %s\n", p); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	fmt.Fprintf(f.IO.ErrOut, "Next: outpost build %s, then push it to a registry on localhost:5000 (outpost push) and deploy it: outpost deploy DEVICE -f %s\n",
		opts.Dir, filepath.Join(opts.Dir, "deployment.yaml"))
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

go 1.26
`

const initMainGo = `// Command {{NAME}} is an outpost module: it prints a simulated
// temperature reading as one JSON line every INTERVAL seconds (default 5),
// in the shape of Azure IoT Edge's SimulatedTemperatureSensor, until it is
// stopped with SIGTERM or Ctrl-C.
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
)

func main() {
	once := flag.Bool("once", false, "print one reading and exit")
	flag.Parse()
	interval, err := intervalFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "{{NAME}}:", err)
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
	fmt.Fprintf(os.Stderr, "{{NAME}}: a reading every %s\n", interval)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if err := out.Encode(read(start, time.Now())); err != nil {
			fmt.Fprintln(os.Stderr, "{{NAME}}:", err)
			os.Exit(1)
		}
		select {
		case <-ctx.Done():
			fmt.Fprintln(os.Stderr, "{{NAME}}: stopping")
			return
		case <-tick.C:
		}
	}
}

// intervalFromEnv reads INTERVAL: seconds ("5", "0.5") or a Go duration
// ("500ms").
func intervalFromEnv() (time.Duration, error) {
	s := os.Getenv("INTERVAL")
	if s == "" {
		return 5 * time.Second, nil
	}
	if secs, err := strconv.ParseFloat(s, 64); err == nil && secs > 0 {
		return time.Duration(secs * float64(time.Second)), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("INTERVAL=%q is not a positive number of seconds", s)
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
