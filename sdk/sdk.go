// Package sdk carries the source of the Go module SDK (sdk/moduleclient),
// so that `outpost init` and `outpost quickstart` can write it next to the
// module they make: a module builds against the SDK of the outpost that
// made it, offline, without a published version of
// github.com/outpost-edge/outpost.
package sdk

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

//go:embed moduleclient/*.go
var source embed.FS

// GoMod is the go.mod of the SDK as WriteModule writes it: the
// requirements of github.com/outpost-edge/outpost that sdk/moduleclient
// needs (a test keeps them those of the repository's go.mod).
const GoMod = `module github.com/outpost-edge/outpost

go 1.26.0

require github.com/eclipse/paho.mqtt.golang v1.5.1

require (
	github.com/gorilla/websocket v1.5.3 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sync v0.25.0 // indirect
)
`

// Dir is where a module made by `outpost init` keeps its copy of the SDK,
// relative to the module's go.mod (whose replace directive points there).
const Dir = "outpost-sdk"

// WriteModule writes the SDK as a Go module into dir: its go.mod and
// sdk/moduleclient/*.go (not the tests). Files already there are replaced, so
// that dir holds this outpost's SDK.
func WriteModule(dir string) error {
	files, err := fs.Glob(source, "moduleclient/*.go")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "sdk", "moduleclient"), 0o755); err != nil {
		return fmt.Errorf("write the Go SDK: %w", err)
	}
	write := func(name string, b []byte) error {
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(name)), b, 0o644); err != nil {
			return fmt.Errorf("write the Go SDK: %w", err)
		}
		return nil
	}
	if err := write("go.mod", []byte(GoMod)); err != nil {
		return err
	}
	for _, f := range files {
		if strings.HasSuffix(path.Base(f), "_test.go") {
			continue
		}
		b, err := source.ReadFile(f)
		if err != nil {
			return err
		}
		if err := write("sdk/"+f, b); err != nil {
			return err
		}
	}
	return nil
}
