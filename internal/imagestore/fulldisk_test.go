package imagestore

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestFullDisk pulls into a store on a real disk (a 2 MB tmpfs) too small
// for the image: the pull fails saying the disk is full and where, leaves no
// partial blob, rootfs or record, and the store then pulls an image that
// fits. It needs root to mount.
func TestFullDisk(t *testing.T) {
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root on Linux")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })

	noise := make([]byte, 1536<<10) // incompressible: 1.5 MB as a blob, 1.5 MB unpacked
	r := rand.NewChaCha8([32]byte{1})
	_, _ = r.Read(noise)
	reg := newRegistry(t)
	big, small := reg.ref("big:1"), reg.ref("small:1")
	reg.push(t, big, image(t, v1.Platform{}, layer(t, file("data", string(noise)))))
	reg.push(t, small, image(t, v1.Platform{}, layer(t, file("data", "small"))))

	s := openStore(t, dir)
	_, err := s.Pull(ctx, big, nil)
	if err == nil {
		t.Fatal("a pull larger than the disk succeeded")
	}
	t.Logf("full disk: %v", err)
	if !strings.Contains(err.Error(), "no space left on device") || !strings.Contains(err.Error(), "free space on the disk of "+dir) {
		t.Errorf("the error does not say the disk is full and where: %v", err)
	}
	if _, err := s.Get(big); !isNotPulled(err) {
		t.Errorf("Get after the failed pull: %v", err)
	}
	tmp, rootfs, records := leftovers(t, dir)
	if len(tmp)+len(rootfs)+len(records) > 0 {
		t.Errorf("left after the failed pull: temp %v, rootfs %v, records %v", tmp, rootfs, records)
	}
	if got, err := s.Pull(ctx, small, nil); err != nil {
		t.Fatalf("a pull that fits, after the full disk: %v", err)
	} else if b, err := os.ReadFile(got.Rootfs + "/data"); err != nil || string(b) != "small" {
		t.Errorf("the small image's data: %q %v", b, err)
	}
}
