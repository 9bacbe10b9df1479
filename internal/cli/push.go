package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/outpost-edge/outpost/internal/image"
)

type pushOptions struct {
	Args     []string // PATH or REF, as given
	Tag      string
	CacheDir string
	Insecure bool
	Jobs     int
}

// pushResult is what push prints with -o json|yaml, one per image.
type pushResult struct {
	Reference string `json:"reference"`
	Digest    string `json:"digest"`
}

// pushTarget is one image to push: where it came from and its reference.
type pushTarget struct {
	arg string
	ref name.Reference
	dir string // the module's dir, for a PATH
}

func newPushCmd(f *Factory) *cobra.Command { return newPushCmdWith(f, nil) }

func newPushCmdWith(f *Factory, runF func(*pushOptions) error) *cobra.Command {
	opts := &pushOptions{}
	cmd := &cobra.Command{
		Use:   "push [PATH|REF...]",
		Short: "Push built module images to their registry",
		Long: `Push images from the local OCI image cache to their registries and print each
one's reference with its digest.

PATH is a module directory (it holds module.yaml) or a solution directory (its
modules/*/module.yaml are all pushed): what the last build of the module made,
under module.yaml's repository and tag (or --tag), is pushed there. REF is an
image reference in the cache, such as localhost:5000/tempsensor:1.0. The
default is the current directory.

Credentials come from docker's config.json and its credential helpers, as
docker login leaves them. Blobs the registry already has are skipped, a layer
known to be in another repository of the same registry is mounted from there,
and blobs are uploaded --jobs at a time. 408, 429 and 5xx answers and broken
connections are retried with back-off, waiting at least as long as the
registry's Retry-After asks. Plain HTTP is used only for registries on
loopback, or for others with --insecure. Progress goes to stderr: a bar per
layer on a terminal, else a line per layer as it is done.`,
		Example: `  outpost push                                   # the module or solution here
  outpost push modules/tempsensor
  outpost push localhost:5000/tempsensor:1.0 -o json
  outpost push registry.lan:5000/tempsensor:1.0 --insecure`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Args = args
			if len(opts.Args) == 0 {
				opts.Args = []string{"."}
			}
			// Flags > env (OUTPOST_CACHE, …) > config file.
			cfg := f.Config()
			if cfg.IsSet("cache") {
				opts.CacheDir = cfg.GetString("cache")
			}
			if cfg.IsSet("insecure") {
				opts.Insecure = cfg.GetBool("insecure")
			}
			if cfg.IsSet("jobs") {
				opts.Jobs = cfg.GetInt("jobs")
			}
			if opts.Jobs < 1 {
				return flagErrorf("invalid --jobs %d: want 1 or more", opts.Jobs)
			}
			if opts.Tag != "" {
				if err := image.CheckTag(opts.Tag); err != nil {
					return flagErrorf("--tag: %v", err)
				}
			}
			if runF != nil {
				return runF(opts)
			}
			return pushRun(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Tag, "tag", "", "for a PATH, the tag its image was built with (default: module.yaml's tag)")
	fl.StringVar(&opts.CacheDir, "cache", "", "the local OCI image cache (env OUTPOST_CACHE; default: $XDG_CACHE_HOME/outpost/oci)")
	fl.BoolVar(&opts.Insecure, "insecure", false, "allow plain HTTP to registries that are not on loopback")
	fl.IntVar(&opts.Jobs, "jobs", image.DefaultPushJobs, "how many blobs to upload at once")
	return cmd
}

func pushRun(ctx context.Context, f *Factory, opts *pushOptions) error {
	var targets []pushTarget
	for _, arg := range opts.Args {
		ts, err := pushTargets(arg, opts.Tag)
		if err != nil {
			return err
		}
		targets = append(targets, ts...)
	}
	cache, err := image.OpenCache(opts.CacheDir)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	var results []pushResult
	for _, t := range targets {
		artifact, err := cache.Lookup(t.ref.String())
		if err != nil {
			if errors.Is(err, image.ErrNotInCache) {
				hint := "Build it first: outpost build"
				if t.dir != "" {
					hint += " " + t.dir
					if opts.Tag != "" {
						hint += " --tag " + opts.Tag
					}
				}
				return &ExitError{Code: ExitNotFound, Err: fmt.Errorf("push %s: %w (%s)", t.ref, err, cache.Dir()), Hint: hint + "."}
			}
			return fmt.Errorf("push %s: %w", t.ref, err)
		}
		fmt.Fprintf(f.IO.ErrOut, "• pushing %s\n", t.ref)
		digest, err := image.Push(ctx, t.ref, artifact, image.PushOptions{
			Insecure: opts.Insecure,
			Jobs:     opts.Jobs,
			Progress: f.IO.ErrOut,
			TTY:      f.IO.IsErrTerminal(),
		})
		if err != nil {
			return err
		}
		results = append(results, pushResult{Reference: t.ref.String(), Digest: digest.String()})
	}
	var v any = results
	if len(results) == 1 {
		v = results[0]
	}
	return f.Print(v, func(w io.Writer) error {
		for _, r := range results {
			ref := r.Reference + "@" + r.Digest
			if d, err := name.NewDigest(r.Reference); err == nil && d.DigestStr() == r.Digest {
				ref = r.Reference
			}
			if _, err := fmt.Fprintln(w, ref); err != nil {
				return err
			}
		}
		return nil
	})
}

// pushTargets resolves one argument: an existing path is a module (or a
// solution of modules), anything else an image reference.
func pushTargets(arg, tag string) ([]pushTarget, error) {
	fi, err := os.Stat(arg)
	if err != nil {
		ref, perr := name.ParseReference(arg)
		if perr != nil {
			return nil, &ExitError{Code: ExitNotFound, Err: fmt.Errorf("push: %s is neither a module directory nor an image reference (%v)", arg, perr)}
		}
		if tag != "" {
			return nil, flagErrorf("--tag applies to a PATH, not to an image reference (%s)", arg)
		}
		return []pushTarget{{arg: arg, ref: ref}}, nil
	}
	var dirs []string
	switch {
	case !fi.IsDir() && filepath.Base(arg) == image.ModuleFile:
		dirs = []string{filepath.Dir(arg)}
	case !fi.IsDir():
		return nil, flagErrorf("push: %s is a file; pass a module directory (with %s), a solution directory or an image reference", arg, image.ModuleFile)
	default:
		if _, err := os.Stat(filepath.Join(arg, image.ModuleFile)); err == nil {
			dirs = []string{arg}
		} else {
			matches, _ := filepath.Glob(filepath.Join(arg, "modules", "*", image.ModuleFile))
			if len(matches) == 0 {
				return nil, &ExitError{
					Code: ExitNotFound,
					Err:  fmt.Errorf("push: %s holds no %s and no modules/*/%s", arg, image.ModuleFile, image.ModuleFile),
					Hint: "Pass a module directory, a solution directory or an image reference such as localhost:5000/tempsensor:1.0.",
				}
			}
			sort.Strings(matches)
			for _, m := range matches {
				dirs = append(dirs, filepath.Dir(m))
			}
		}
	}
	var out []pushTarget
	for _, d := range dirs {
		m, err := image.LoadModule(d)
		if err != nil {
			return nil, buildError(err)
		}
		ref, err := m.Reference(tag)
		if err != nil {
			return nil, fmt.Errorf("push %s: %w", d, err)
		}
		out = append(out, pushTarget{arg: arg, ref: ref, dir: d})
	}
	return out, nil
}
