package repotest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// renamesAllowed are the files besides internal/atomicfile that call os.Rename,
// with why theirs is not a replacement of a file's contents (which goes through
// atomicfile: temp file, fsync, rename, directory fsync).
var renamesAllowed = map[string]string{
	"internal/image/cache.go":           "a blob is named by its digest, known only once written; Tag syncs the blob dir before the index names it",
	"internal/imagestore/pull.go":       "an unpacked rootfs directory moved into place, then atomicfile.SyncDir",
	"internal/mgmt/mgmt.go":             "a listening socket moved into place once it is 0600",
	"internal/runtime/local_linux.go":   "an instance's directory moved aside to be deleted in the background",
	"internal/runtime/shim/logwrite.go": "log rotation: module.log.N renamed to N+1",
}

// TestAtomicWritesUseAtomicfile fails when a package writes a temp file and renames
// it over a file by hand (issue 9, item 28: the hub's copy skipped the directory
// fsync): such writes go through internal/atomicfile. Any other use of os.Rename
// is listed in renamesAllowed with its reason.
func TestAtomicWritesUseAtomicfile(t *testing.T) {
	root := repoRoot(t)
	var found []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if name := d.Name(); name == ".git" || name == "node_modules" || name == "testdata" || rel == "internal/atomicfile" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		osName := ""
		for _, imp := range f.Imports {
			if imp.Path.Value == `"os"` {
				osName = "os"
				if imp.Name != nil {
					osName = imp.Name.Name
				}
			}
		}
		if osName == "" {
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Rename" {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && x.Name == osName {
				if _, ok := renamesAllowed[rel]; !ok && !slices.Contains(found, rel) {
					found = append(found, rel)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range found {
		t.Errorf("%s calls os.Rename: replace a file's contents with atomicfile.WriteFile (or Create/Commit), "+
			"which fsyncs the file and its directory; or, if it is not such a write, add it to renamesAllowed with why", rel)
	}
	for rel := range renamesAllowed {
		if _, err := os.Stat(filepath.Join(root, rel)); err != nil {
			t.Errorf("renamesAllowed names %s: %v", rel, err)
		}
	}
}
