package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/image"
)

type buildOptions struct {
	Paths     []string
	Platforms []string
	Tag       string
	Push      bool
	CacheDir  string
	Insecure  bool
	Pull      bool
	Verbose   bool
	Epoch     int64
}

// buildResult is what build prints with -o json, one per module.
type buildResult struct {
	Reference string          `json:"reference"`
	Digest    string          `json:"digest"`
	Platforms []buildPlatform `json:"platforms"`
	Pushed    bool            `json:"pushed"`
}

type buildPlatform struct {
	Platform string `json:"platform"`
	Digest   string `json:"digest"`
}

func newBuildCmd(f *Factory) *cobra.Command {
	opts := &buildOptions{}
	cmd := &cobra.Command{
		Use:   "build [PATH...]",
		Short: "Build module images for every platform, without a Docker daemon",
		Long: `Build the images of modules into the local OCI image cache and print each
one's reference with its digest (-o json: reference, digest, and each
platform's digest; a list when several modules are built).

PATH is a module directory (it holds module.yaml) or a solution directory (its
modules/*/module.yaml are all built); the default is the current directory.
module.yaml says how:
  build: {go: ./cmd/NAME}       cross-compiles a Go package for each platform
                                (CGO off, -trimpath, platforms in parallel)
  build: {dockerfile: FILE}     a Dockerfile without RUN: FROM, COPY, ADD of
                                local files, ENV, ARG, WORKDIR, ENTRYPOINT,
                                CMD, LABEL, EXPOSE, USER, STOPSIGNAL, VOLUME
  build: {files: [{src, dst}]}  copies files and directories
Paths stay inside the module directory: "..", absolute paths and symlinks
that point out are errors. base is scratch or any image reference; it is
pulled once and kept in the cache, so later builds need no network (--pull
asks its registry again).

One platform makes an image; several make an OCI image index. The same inputs
give the same digest on any machine: every time in the image is
SOURCE_DATE_EPOCH (default 0), file modes and owners are normalised. Layers
are kept by the digest of their content, so an unchanged layer is never
rebuilt nor recompressed.

The cache is $XDG_CACHE_HOME/outpost/oci unless --cache (env OUTPOST_CACHE)
says otherwise; it is an OCI image layout that other tools read too.
--push pushes each image after it is built, as outpost push does.`,
		Example: `  outpost build                                  # the module or solution here
  outpost build modules/tempsensor --platform linux/arm64
  outpost build --tag 1.1 --push
  outpost build -o json -v`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Paths = args
			if len(opts.Paths) == 0 {
				opts.Paths = []string{"."}
			}
			// Flags > env (OUTPOST_CACHE, …) > config file.
			cfg := f.Config()
			opts.CacheDir = cfg.GetString("cache")
			if cfg.IsSet("insecure") {
				opts.Insecure = cfg.GetBool("insecure")
			}
			epoch, err := image.SourceDateEpoch()
			if err != nil {
				return flagErrorf("%v", err)
			}
			opts.Epoch = epoch
			if opts.Tag != "" {
				if err := image.CheckTag(opts.Tag); err != nil {
					return flagErrorf("--tag: %v", err)
				}
			}
			for _, p := range opts.Platforms {
				for _, s := range strings.Split(p, ",") {
					if _, err := image.ParsePlatform(s); err != nil {
						return flagErrorf("--platform: %v", err)
					}
				}
			}
			return buildRun(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&opts.Platforms, "platform", nil, "platforms to build, os/arch[/variant] (default: module.yaml's platforms)")
	fl.StringVar(&opts.Tag, "tag", "", "the image tag (default: module.yaml's tag)")
	fl.BoolVar(&opts.Push, "push", false, "push each image after building it")
	fl.StringVar(&opts.CacheDir, "cache", "", "the local OCI image cache (env OUTPOST_CACHE; default: $XDG_CACHE_HOME/outpost/oci)")
	fl.BoolVar(&opts.Insecure, "insecure", false, "allow plain HTTP to registries that are not on loopback")
	fl.BoolVar(&opts.Pull, "pull", false, "ask the base image's registry for its tag again, even when it is cached")
	fl.BoolVarP(&opts.Verbose, "verbose", "v", false, "print each phase's time and each layer")
	return cmd
}

// moduleDirs finds the module directories a build PATH names: the
// directory itself when it holds module.yaml, else its modules/*/.
func moduleDirs(p string) ([]string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &ExitError{Code: ExitNotFound, Err: fmt.Errorf("build: %s does not exist", p)}
		}
		return nil, fmt.Errorf("build: %w", err)
	}
	if !fi.IsDir() {
		if filepath.Base(p) == image.ModuleFile {
			return []string{filepath.Dir(p)}, nil
		}
		return nil, flagErrorf("build: %s is a file; pass a module directory (with module.yaml) or a solution directory", p)
	}
	if _, err := os.Stat(filepath.Join(p, image.ModuleFile)); err == nil {
		return []string{p}, nil
	}
	matches, _ := filepath.Glob(filepath.Join(p, "modules", "*", image.ModuleFile))
	if len(matches) == 0 {
		return nil, &ExitError{
			Code: ExitNotFound,
			Err:  fmt.Errorf("build: %s holds no %s and no modules/*/%s", p, image.ModuleFile, image.ModuleFile),
			Hint: "Pass a module directory or a solution directory, or make a solution with: outpost init " + p,
		}
	}
	sort.Strings(matches)
	dirs := make([]string, len(matches))
	for i, m := range matches {
		dirs[i] = filepath.Dir(m)
	}
	return dirs, nil
}

func buildRun(ctx context.Context, f *Factory, opts *buildOptions) error {
	var dirs []string
	for _, p := range opts.Paths {
		d, err := moduleDirs(p)
		if err != nil {
			return err
		}
		dirs = append(dirs, d...)
	}
	var results []buildResult
	for _, dir := range dirs {
		res, err := image.Build(ctx, dir, image.BuildOptions{
			Platforms:       opts.Platforms,
			Tag:             opts.Tag,
			CacheDir:        opts.CacheDir,
			Insecure:        opts.Insecure,
			SourceDateEpoch: opts.Epoch,
			Log:             f.IO.ErrOut,
			Verbose:         opts.Verbose,
			Pull:            opts.Pull,
		})
		if err != nil {
			return buildError(err)
		}
		out := buildResult{Reference: res.Reference.String(), Digest: res.Digest.String()}
		for _, p := range res.Platforms {
			out.Platforms = append(out.Platforms, buildPlatform{Platform: p.Platform, Digest: p.Digest.String()})
		}
		if opts.Push {
			if _, err := image.Push(ctx, res.Reference, res.Artifact(), image.PushOptions{
				Insecure: opts.Insecure,
				Progress: f.IO.ErrOut,
				TTY:      f.IO.IsErrTerminal(),
			}); err != nil {
				return err
			}
			out.Pushed = true
		}
		results = append(results, out)
	}
	var v any = results
	if len(results) == 1 {
		v = results[0]
	}
	return f.Print(v, func(w io.Writer) error {
		for _, r := range results {
			if _, err := fmt.Fprintf(w, "%s@%s\n", r.Reference, r.Digest); err != nil {
				return err
			}
		}
		return nil
	})
}

// buildError adds a next step to the errors of module.yaml and Dockerfiles.
func buildError(err error) error {
	var me *image.ModuleError
	if errors.As(err, &me) {
		return &ExitError{Code: ExitFailure, Err: err, Hint: "Fix what is named above and build again."}
	}
	if errors.Is(err, os.ErrNotExist) && strings.Contains(err.Error(), image.ModuleFile) {
		return &ExitError{Code: ExitNotFound, Err: err}
	}
	return err
}
