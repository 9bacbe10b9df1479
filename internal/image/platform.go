package image

import (
	"fmt"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// KnownPlatforms lists the platforms outpost builds for, as os/arch[/variant]:
// the Linux container platforms Go cross-compiles to with CGO off. Windows
// containers need Windows base layers and a layer format of their own, which
// outpost does not make yet.
var KnownPlatforms = []string{
	"linux/amd64",
	"linux/arm64",
	"linux/arm/v7",
	"linux/arm/v6",
	"linux/386",
	"linux/ppc64le",
	"linux/s390x",
	"linux/riscv64",
}

// ParsePlatform parses os/arch[/variant] and checks it is one of
// KnownPlatforms. linux/arm64/v8 is linux/arm64 and linux/arm is
// linux/arm/v7, as docker reads them.
func ParsePlatform(s string) (v1.Platform, error) {
	s = strings.TrimSpace(s)
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || slices.Contains(parts, "") {
		return v1.Platform{}, fmt.Errorf("platform %q is not os/arch[/variant] (known platforms: %s)", s, strings.Join(KnownPlatforms, ", "))
	}
	p := v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	p = normalizePlatform(p)
	if !slices.Contains(KnownPlatforms, p.String()) {
		hint := ""
		switch {
		case p.OS == "darwin":
			hint = "; macOS has no containers: build for linux/amd64 or linux/arm64, which run under Docker Desktop too"
		case p.OS == "windows":
			hint = "; Windows containers are not supported yet"
		case p.OS == "linux" && p.Architecture == "arm" && p.Variant != "":
			hint = "; arm takes v6 or v7"
		}
		return v1.Platform{}, fmt.Errorf("unknown platform %q%s (known platforms: %s)", s, hint, strings.Join(KnownPlatforms, ", "))
	}
	return p, nil
}

// normalizePlatform writes a platform the way image indexes carry it:
// arm64's v8 variant left out, arm's variant made explicit (v7).
func normalizePlatform(p v1.Platform) v1.Platform {
	switch p.Architecture {
	case "arm64", "aarch64":
		p.Architecture = "arm64"
		if p.Variant == "v8" {
			p.Variant = ""
		}
	case "arm":
		if p.Variant == "" {
			p.Variant = "v7"
		}
	case "x86_64", "x86-64":
		p.Architecture = "amd64"
	}
	return p
}

// platformMatches reports whether an image for have runs as want: same os
// and architecture, and the same variant after normalising (an arm64 image
// with no variant is v8).
func platformMatches(have, want v1.Platform) bool {
	h, w := normalizePlatform(have), normalizePlatform(want)
	return h.OS == w.OS && h.Architecture == w.Architecture && h.Variant == w.Variant
}

// goEnv returns the GOOS, GOARCH and GOARM settings for p.
func goEnv(p v1.Platform) []string {
	env := []string{"GOOS=" + p.OS, "GOARCH=" + p.Architecture}
	if p.Architecture == "arm" {
		env = append(env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	}
	return env
}
