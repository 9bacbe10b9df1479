package runtime

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// inRoot returns the host path of p inside root, following symlinks as if root were "/":
// an absolute link or a ".." never leaves root. The last element need not exist.
func inRoot(root, p string) (string, error) {
	const maxLinks = 64
	links := 0
	var done string // resolved so far, relative to root, cleaned, no leading slash
	rest := path.Clean("/" + p)
	for rest != "" && rest != "/" {
		rest = strings.TrimPrefix(rest, "/")
		elem, after, _ := strings.Cut(rest, "/")
		rest = after
		if elem == "" || elem == "." {
			continue
		}
		if elem == ".." {
			done = path.Dir("/" + done)[1:]
			continue
		}
		next := path.Join(done, elem)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return filepath.Join(root, next, rest), nil
			}
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = next
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			done = ""
		}
		rest = target + "/" + rest
	}
	return filepath.Join(root, done), nil
}

// lookPathIn finds the program file inside root: an absolute name as it is, a name with a
// slash relative to dir, else the first executable regular file on pathEnv. It returns the
// host path.
func lookPathIn(root, dir, name, pathEnv string) (string, error) {
	var candidates []string
	switch {
	case strings.HasPrefix(name, "/"):
		candidates = []string{name}
	case strings.Contains(name, "/"):
		candidates = []string{path.Join("/", dir, name)}
	default:
		for _, d := range filepath.SplitList(pathEnv) {
			if !path.IsAbs(d) {
				d = path.Join("/", dir, d)
			}
			candidates = append(candidates, path.Join(d, name))
		}
	}
	for _, c := range candidates {
		host, err := inRoot(root, c)
		if err != nil {
			continue
		}
		fi, err := os.Stat(host)
		if err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return host, nil
		}
	}
	return "", fmt.Errorf("%s: executable file not found in the rootfs %s", name, root)
}

// user is a resolved Spec.User.
type user struct {
	UID, GID uint32
	Groups   []uint32 // supplementary groups, from /etc/group
	Home     string
	Name     string
}

// resolveUser resolves spec "", "name", "uid", "uid:gid", "name:group" or "uid:group"
// through root's /etc/passwd and /etc/group, as docker does: a uid not in passwd is fine
// (gid 0, home /), a name not in passwd is an error.
func resolveUser(root, spec string) (user, error) {
	if spec == "" {
		spec = "0"
	}
	uspec, gspec, hasGroup := strings.Cut(spec, ":")
	u := user{Home: "/"}
	passwd := readColonFile(root, "/etc/passwd")
	uid, numeric := parseID(uspec)
	found := false
	for _, f := range passwd {
		if len(f) < 6 {
			continue
		}
		id, ok := parseID(f[2])
		if !ok {
			continue
		}
		if (numeric && id == uid) || (!numeric && f[0] == uspec) {
			gid, _ := parseID(f[3])
			u = user{UID: id, GID: gid, Home: f[5], Name: f[0]}
			found = true
			break
		}
	}
	if !found {
		if !numeric {
			return user{}, fmt.Errorf("user %q: not found in the image's /etc/passwd", uspec)
		}
		u.UID = uid
	}
	groups := readColonFile(root, "/etc/group")
	if hasGroup {
		gid, ok := parseID(gspec)
		if !ok {
			ok = false
			for _, f := range groups {
				if len(f) >= 3 && f[0] == gspec {
					gid, ok = parseID(f[2])
					break
				}
			}
			if !ok {
				return user{}, fmt.Errorf("group %q: not found in the image's /etc/group", gspec)
			}
		}
		u.GID = gid
	}
	if u.Name != "" {
		for _, f := range groups {
			if len(f) < 4 {
				continue
			}
			gid, ok := parseID(f[2])
			if !ok || gid == u.GID {
				continue
			}
			for _, m := range strings.Split(f[3], ",") {
				if m == u.Name {
					u.Groups = append(u.Groups, gid)
					break
				}
			}
		}
	}
	if u.Home == "" {
		u.Home = "/"
	}
	return u, nil
}

func parseID(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil
}

// readColonFile reads a passwd-style file of root: fields of each line that is not a
// comment. A missing file is empty.
func readColonFile(root, name string) [][]string {
	host, err := inRoot(root, name)
	if err != nil {
		return nil
	}
	f, err := os.Open(host)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out
}

// completeEnv adds PATH and HOME when env lacks them, as docker does.
func completeEnv(env []string, home string) []string {
	out := append([]string(nil), env...)
	if _, ok := envGet(out, "PATH"); !ok {
		out = append(out, "PATH="+defaultPath)
	}
	if _, ok := envGet(out, "HOME"); !ok {
		out = append(out, "HOME="+home)
	}
	return out
}
