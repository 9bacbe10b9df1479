// Package version holds the build's version, set at link time with
// -ldflags "-X github.com/outpost-edge/outpost/internal/version.Version=…".
package version

import (
	"runtime"
	"runtime/debug"
)

// Set by the linker; see .goreleaser.yaml.
var (
	Version = "dev"
	Commit  = ""
	Date    = ""
)

// Info describes this build.
type Info struct {
	Version   string `json:"version" yaml:"version"`
	Commit    string `json:"commit" yaml:"commit"`
	Date      string `json:"date,omitempty" yaml:"date,omitempty"`
	GoVersion string `json:"goVersion" yaml:"goVersion"`
	Platform  string `json:"platform" yaml:"platform"`
}

// Get returns the build's version, falling back to the VCS stamp Go records
// in the binary when the linker flags were not set (go build, go run).
func Get() Info {
	info := Info{
		Version:   Version,
		Commit:    Commit,
		Date:      Date,
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if info.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if info.Commit == "" {
					info.Commit = s.Value
				}
			case "vcs.time":
				if info.Date == "" {
					info.Date = s.Value
				}
			case "vcs.modified":
				if s.Value == "true" && Commit == "" && info.Commit != "" {
					info.Commit += "-dirty"
				}
			}
		}
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}
