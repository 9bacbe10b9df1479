package imagestore

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// unpackSandbox is a temp dir holding a canary dir (with a secret file) next
// to the store dirs of the cases: nothing outside the stores may change.
type unpackSandbox struct {
	base, canary string
	before       map[string]fileState
}

func newSandbox(t *testing.T) *unpackSandbox {
	base := t.TempDir()
	sb := &unpackSandbox{base: base, canary: filepath.Join(base, "canary")}
	os.Mkdir(sb.canary, 0o755)
	os.WriteFile(filepath.Join(sb.canary, "secret"), []byte("secret"), 0o644)
	os.Mkdir(filepath.Join(base, "stores"), 0o755)
	sb.before = sb.outside(t)
	return sb
}

// outside snapshots everything in base but the stores.
func (sb *unpackSandbox) outside(t *testing.T) map[string]fileState {
	m := snapshot(t, sb.base)
	maps.DeleteFunc(m, func(k string, _ fileState) bool { return k == "stores" || strings.HasPrefix(k, "stores/") })
	return m
}

func (sb *unpackSandbox) check(t *testing.T) {
	t.Helper()
	if diff := diffTrees(sb.outside(t), sb.before); diff != "" {
		t.Errorf("something outside the store changed:\n%s", diff)
	}
}

func TestMaliciousLayersRefused(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	sb := newSandbox(t)
	canaryRel, _ := filepath.Rel("/", sb.canary)
	cases := []struct {
		name   string
		layers [][]entry
		entry  string // the entry the error names
		reason string
	}{
		{"dotdot", [][]entry{{file("ok", "1"), file("../x", "pwned")}}, "../x", `".." component`},
		{"dotdot deep", [][]entry{{file("a/../../../../../../../../../../"+canaryRel+"/pwned", "x")}}, "a/../../../../../../../../../../" + canaryRel + "/pwned", `".." component`},
		{"absolute path", [][]entry{{file(sb.canary+"/pwned", "x")}}, sb.canary + "/pwned", "absolute path"},
		{"absolute dir", [][]entry{{mkdir(sb.canary + "/sub/")}}, sb.canary + "/sub/", "absolute path"},
		{"symlink escape then write through it", [][]entry{{symlink("evil", "../../../../../../../../../.."+sb.canary), file("evil/pwned", "x")}}, "evil", "escapes the root"},
		{"symlink escape in a lower layer", [][]entry{{mkdir("d/"), file("d/f", "1")}, {symlink("d/up", "../.."), file("d/up/pwned", "x")}}, "d/up", "escapes the root"},
		{"symlink to parent", [][]entry{{symlink("up", "..")}}, "up", "escapes the root"},
		{"hardlink escape", [][]entry{{hardlink("hl", "../canary/secret")}}, "hl", `".." component`},
		{"hardlink absolute", [][]entry{{hardlink("hl", sb.canary+"/secret")}}, "hl", "absolute path"},
		{"hardlink through an absolute symlink", [][]entry{{symlink("abs", sb.canary), hardlink("hl", "abs/secret")}}, "hl", "not a file in the image"},
		{"hardlink through a symlink to /", [][]entry{{symlink("root", "/"), hardlink("hl", "root"+sb.canary+"/secret")}}, "hl", "not a file in the image"},
		{"char device", [][]entry{{mkdir("dev/"), {Name: "dev/null", Type: tar.TypeChar, Major: 1, Mode: 0o666}}}, "dev/null", "device node"},
		{"block device", [][]entry{{{Name: "dev/sda", Type: tar.TypeBlock, Major: 8, Mode: 0o660}}}, "dev/sda", "device node"},
		{"whiteout of the parent", [][]entry{{mkdir("a/"), file("a/x", "x"), file("keep", "k")}, {file("a/.wh...", "")}}, "a/.wh...", "whiteout of the parent directory"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var layers []v1.Layer
			for _, es := range c.layers {
				layers = append(layers, layer(t, es...))
			}
			ref := reg.ref(fmt.Sprintf("evil:%d", i))
			reg.push(t, ref, image(t, v1.Platform{}, layers...))
			dir := filepath.Join(sb.base, "stores", fmt.Sprint(i))
			s := openStore(t, dir)
			_, err := s.Pull(ctx, ref, nil)
			var ue *UnsafeEntryError
			if !errors.As(err, &ue) {
				t.Fatalf("Pull = %v, want an UnsafeEntryError", err)
			}
			if ue.Entry != c.entry || !strings.Contains(err.Error(), fmt.Sprintf("%q", c.entry)) || !strings.Contains(err.Error(), c.reason) || !strings.Contains(err.Error(), "layer sha256:") {
				t.Errorf("error %q: want entry %q and %q named", err, c.entry, c.reason)
			}
			t.Log(err)
			sb.check(t)
			if tmp, rootfs, recs := leftovers(t, dir); len(tmp)+len(rootfs)+len(recs) > 0 {
				t.Errorf("left behind: tmp %v rootfs %v records %v", tmp, rootfs, recs)
			}
		})
	}
	sb.check(t)
}

func TestHostileLayersContained(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	sb := newSandbox(t)
	canaryRel, _ := filepath.Rel("/", sb.canary)
	cases := []struct {
		name   string
		layers [][]entry
		want   map[string]fileState // paths that must be in the rootfs
		absent []string
	}{
		{
			name:   "write through an absolute symlink",
			layers: [][]entry{{symlink("abs", sb.canary), file("abs/pwned", "x")}},
			want:   map[string]fileState{canaryRel + "/pwned": {Kind: "file", Data: sha("x"), Mode: 0o644}, "abs": {Kind: "symlink", Data: sb.canary}},
		},
		{
			name:   "write through a symlink to / in a lower layer",
			layers: [][]entry{{symlink("root", "/")}, {file("root/etc/passwd", "root:x:0:0")}},
			want:   map[string]fileState{"etc/passwd": {Kind: "file", Data: sha("root:x:0:0"), Mode: 0o644}},
		},
		{
			name:   "a file replaces a symlink, never writes through it",
			layers: [][]entry{{symlink("f", sb.canary+"/secret")}, {file("f", "new")}},
			want:   map[string]fileState{"f": {Kind: "file", Data: sha("new"), Mode: 0o644}},
		},
		{
			name:   "a directory replaced by a symlink",
			layers: [][]entry{{mkdir("d/"), file("d/a", "a")}, {symlink("d", sb.canary), file("d/pwned", "x")}},
			want:   map[string]fileState{"d": {Kind: "symlink", Data: sb.canary}, canaryRel + "/pwned": {Kind: "file", Data: sha("x"), Mode: 0o644}},
			absent: []string{"d/a"},
		},
		{
			name:   "symlink loop",
			layers: [][]entry{{symlink("a", "b"), symlink("b", "a"), file("ok", "1")}},
			want:   map[string]fileState{"ok": {Kind: "file", Data: sha("1"), Mode: 0o644}},
		},
		{
			name:   "FIFO skipped",
			layers: [][]entry{{{Name: "fifo", Type: tar.TypeFifo, Mode: 0o644}, file("ok", "1")}},
			want:   map[string]fileState{"ok": {Kind: "file", Data: sha("1"), Mode: 0o644}},
			absent: []string{"fifo"},
		},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var layers []v1.Layer
			for _, es := range c.layers {
				layers = append(layers, layer(t, es...))
			}
			ref := reg.ref(fmt.Sprintf("hostile:%d", i))
			reg.push(t, ref, image(t, v1.Platform{}, layers...))
			s := openStore(t, filepath.Join(sb.base, "stores", fmt.Sprint(i)))
			img, err := s.Pull(ctx, ref, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := snapshot(t, img.Rootfs)
			for k, w := range c.want {
				if got[k] != w {
					t.Errorf("%s = %+v, want %+v", k, got[k], w)
				}
			}
			for _, k := range c.absent {
				if _, ok := got[k]; ok {
					t.Errorf("%s is in the rootfs", k)
				}
			}
			sb.check(t)
		})
	}
}

func TestWhiteoutsAndOpaqueDirs(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	l1 := layer(t,
		mkdir("a/"), file("a/1", "1"), file("a/2", "2"),
		mkdir("b/"), file("b/x", "x"),
		mkdir("c/"), file("c/old", "old"), mkdir("c/sub/"), file("c/sub/deep", "deep"),
		mkdir("d/"), file("d/keep", "keep"),
		mkdir("e/"), file("e/f", "f"),
		mkdir("h/"), file("h/lower", "lower"),
	)
	l2 := layer(t,
		file("a/.wh.1", ""),
		file(".wh.b", ""),
		file("c/new", "new"), // before the opaque marker: stays
		mkdir("c/sub/"), file("c/sub/fresh", "fresh"),
		file("c/.wh..wh..opq", ""),
		file("e/.wh..wh..opq", ""),
		file("d/.wh.nothing", ""),
		file("g", "same layer"), file(".wh.g", ""), // whiteouts hide lower layers only
		file("h/.wh..wh..opq", ""), file("h/upper", "upper"), // marker first
		file("x/.wh.y", ""), // in a dir no layer has
	)
	l3 := layer(t, mkdir("b/"), file("b/again", "again"))
	ref := reg.ref("wh:1")
	reg.push(t, ref, image(t, v1.Platform{}, l1, l2, l3))

	s := openStore(t, t.TempDir())
	img, err := s.Pull(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := fileState{Kind: "dir", Mode: 0o755}
	f := func(s string) fileState { return fileState{Kind: "file", Data: sha(s), Mode: 0o644} }
	want := map[string]fileState{
		"a": d, "a/2": f("2"),
		"b": d, "b/again": f("again"),
		"c": d, "c/new": f("new"), "c/sub": d, "c/sub/fresh": f("fresh"),
		"d": d, "d/keep": f("keep"),
		"e": d,
		"g": f("same layer"),
		"h": d, "h/upper": f("upper"),
		"x": d,
	}
	if diff := diffTrees(snapshot(t, img.Rootfs), want); diff != "" {
		t.Error(diff)
	}
}

func TestReadOnlyDirsInImage(t *testing.T) {
	t.Parallel()
	// A 0555 directory that a later layer writes into, and that GC and a
	// failed unpack must be able to remove without root.
	reg := newRegistry(t)
	ref := reg.ref("ro:1")
	reg.push(t, ref, image(t, v1.Platform{},
		layer(t, entry{Name: "ro/", Type: tar.TypeDir, Mode: 0o555}, file("ro/a", "a")),
		layer(t, file("ro/b", "b"), entry{Name: "ro/sub/", Type: tar.TypeDir, Mode: 0o500}, entry{Name: "ro/sub/c", Type: tar.TypeReg, Body: "c", Mode: 0o400})))
	dir := t.TempDir()
	s := openStore(t, dir)
	img, err := s.Pull(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := snapshot(t, img.Rootfs)
	if got["ro"].Mode != 0o555 || got["ro/sub"].Mode != 0o500 || got["ro/b"].Data != sha("b") || got["ro/sub/c"].Mode != 0o400 {
		t.Errorf("rootfs = %+v", got)
	}
	if removed, err := s.GC(nil, 0); err != nil || len(removed) != 1 {
		t.Fatalf("GC = %v, %v", removed, err)
	}
	if _, rootfs, _ := leftovers(t, dir); len(rootfs) != 0 {
		t.Errorf("rootfs left: %v", rootfs)
	}
}

func TestLayerCompressions(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	zl, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarBytes(t, []entry{file("zstd", "z")}))), nil
	}, tarball.WithCompression(compression.ZStd))
	if err != nil {
		t.Fatal(err)
	}
	plain := static.NewLayer(tarBytes(t, []entry{file("plain", "p"), {Name: "pax_global_header", Type: tar.TypeXGlobalHeader}}), types.OCIUncompressedLayer)
	ref := reg.ref("comp:1")
	reg.push(t, ref, image(t, v1.Platform{}, layer(t, file("gzip", "g")), zl, plain))
	s := openStore(t, t.TempDir())
	img, err := s.Pull(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := snapshot(t, img.Rootfs)
	for name, body := range map[string]string{"gzip": "g", "zstd": "z", "plain": "p"} {
		if got[name].Data != sha(body) {
			t.Errorf("%s = %+v", name, got[name])
		}
	}
}
