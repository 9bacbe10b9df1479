package imagestore

import (
	"bufio"
	"os"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// HostPlatform is the platform of this machine: runtime.GOOS and GOARCH, and
// for 32-bit ARM the variant the CPU reports in /proc/cpuinfo (v5, v6, v7).
func HostPlatform() v1.Platform {
	p := v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	if runtime.GOARCH == "arm" {
		p.Variant = armVariant()
	}
	return p
}

// armVariant reads "CPU architecture: 7" from /proc/cpuinfo. A 32-bit
// userland on an ARMv8 CPU runs v7 code.
func armVariant() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "CPU architecture" {
			continue
		}
		switch v = strings.TrimSpace(v); {
		case strings.HasPrefix(v, "8"), strings.EqualFold(v, "aarch64"), strings.HasPrefix(v, "7"):
			return "v7"
		case strings.HasPrefix(v, "6"):
			return "v6"
		case strings.HasPrefix(v, "5"):
			return "v5"
		}
	}
	return ""
}

func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

func normArch(a string) string {
	switch strings.ToLower(a) {
	case "x86_64", "x86-64":
		return "amd64"
	case "aarch64":
		return "arm64"
	case "armhf", "armel":
		return "arm"
	case "i386", "i686", "x86":
		return "386"
	}
	return strings.ToLower(a)
}

// normVariant spells a variant as "v<n>" and fills in the one an architecture
// implies when none is named (arm64 is v8, arm is v7, as containerd has it).
func normVariant(arch, v string) string {
	v = strings.ToLower(v)
	if v != "" && v[0] != 'v' {
		v = "v" + v
	}
	if v == "" {
		switch arch {
		case "arm64":
			return "v8"
		case "arm":
			return "v7"
		}
	}
	return v
}

// platformScore says how well an image for have runs on want: -1 not at all,
// higher is better. Without a wanted variant any variant of the architecture
// fits (the one with no variant or the default one first); a 32-bit ARM
// device also runs images for lower ARM variants.
func platformScore(want, have v1.Platform) int {
	if !strings.EqualFold(want.OS, have.OS) {
		return -1
	}
	wa, ha := normArch(want.Architecture), normArch(have.Architecture)
	if wa != ha {
		return -1
	}
	wv, hv := normVariant(wa, want.Variant), normVariant(ha, have.Variant)
	switch {
	case wv == hv:
		return 100
	case want.Variant == "":
		if have.Variant == "" {
			return 90
		}
		return 50
	case wa == "arm" && len(wv) == 2 && len(hv) == 2 && hv < wv:
		return 10 + int(hv[1]-'0') // v6 before v5 on a v7 device
	}
	return -1
}

// unknownPlatform reports index entries that are not images to run
// (attestations use unknown/unknown).
func unknownPlatform(p *v1.Platform) bool {
	return p == nil || p.OS == "unknown" || p.Architecture == "unknown"
}
