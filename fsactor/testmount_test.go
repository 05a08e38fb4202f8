package fsactor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jacobsa/fuse"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// testMount is a volume served by a Server on a real FUSE mount, mounted the
// way node mounts (DESIGN.md, the actor, point 5): spoolfs opens /dev/fuse
// and mounts itself, hands jacobsa a dup of the descriptor as /dev/fd/N,
// and keeps the original for kernel notifications.
type testMount struct {
	dir string
	srv *Server // nil when served by something else (benchmarks)
	mfs *fuse.MountedFileSystem
	dev *os.File // the original /dev/fuse descriptor (notifications)
	// noWriteback mounts without the kernel's writeback cache (a
	// follower's mount).
	noWriteback bool
}

// needMount ends the test (testsupport's CI rule: fails with CI=true,
// skips otherwise) unless this process can mount FUSE the way mountDevice
// does: mount(2) itself, so as root. -short (make test-short) skips it.
func needMount(t testing.TB) {
	t.Helper()
	testsupport.SkipShort(t, "no mounts")
	testsupport.RequireRoot(t, "mount(2) of /dev/fuse")
	testsupport.RequireMount(t)
}

// mountTest mounts a new volume with cfg and sink (a DiscardSink when nil),
// unmounted when the test ends, even on failure. tune, when not nil, may
// adjust the server before it serves.
func mountTest(t testing.TB, cfg Config, sink Sink, tune func(*Server)) *testMount {
	t.Helper()
	if sink == nil {
		sink = &DiscardSink{}
	}
	if cfg.Log == nil {
		cfg.Log = zaptest.NewLogger(t)
	}
	m := mountDevice(t)
	cfg.NotifyDev = m.dev // the actor polls it, as in production
	srv, err := NewServer(cfg, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tune != nil {
		tune(srv)
	}
	m.srv = srv
	m.serve(t, srv)
	return m
}

// mountDevice opens /dev/fuse and mounts it on a new directory; the mount
// waits for a server (serve). It is unmounted when the test ends.
func mountDevice(t testing.TB) *testMount {
	t.Helper()
	dir := t.TempDir()
	// Other uids (the gid test's child) must reach the mount point.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fd, err := syscall.Open("/dev/fuse", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		mountFailed(t, fmt.Errorf("open /dev/fuse: %w", err))
	}
	dev := os.NewFile(uintptr(fd), "/dev/fuse")
	data := fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0,default_permissions,allow_other", fd)
	if err := unix.Mount("spoolfs:test", dir, "fuse.spoolfs", unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		dev.Close()
		mountFailed(t, fmt.Errorf("mount %s: %w", dir, err))
	}
	m := &testMount{dir: dir, dev: dev}
	t.Cleanup(m.unmount(t))
	return m
}

// serve hands jacobsa a dup of the device as /dev/fd/N, served by srv.
func (m *testMount) serve(t testing.TB, srv fuse.Server) {
	t.Helper()
	dup, err := unix.FcntlInt(m.dev.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := fuse.Mount("/dev/fd/"+strconv.Itoa(dup), srv, &fuse.MountConfig{
		FSName: "spoolfs:test", Subtype: "spoolfs", DisableWritebackCaching: m.noWriteback,
	})
	if err != nil {
		unix.Close(dup)
		t.Fatalf("serving /dev/fd/%d: %v", dup, err)
	}
	m.mfs = mfs
}

// mountFailed ends the test by testsupport's CI rule.
func mountFailed(t testing.TB, err error) {
	t.Helper()
	testsupport.Unavailable(t, "cannot mount FUSE: %v", err)
}

// unmount returns the cleanup: unmount, wait for ServeOps to end, close the
// device; lazy unmount as the last resort, so no mount outlives the test.
func (m *testMount) unmount(t testing.TB) func() {
	return func() {
		err := unix.Unmount(m.dir, 0)
		for i := 0; errors.Is(err, unix.EBUSY) && i < 50; i++ {
			time.Sleep(20 * time.Millisecond) // a client of the test may still hold a file
			err = unix.Unmount(m.dir, 0)
		}
		if err != nil {
			t.Errorf("unmount %s: %v; detaching it", m.dir, err)
			unix.Unmount(m.dir, unix.MNT_DETACH)
		}
		if m.mfs != nil {
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			if err := m.mfs.Join(ctx); err != nil {
				t.Errorf("ServeOps did not end after unmount: %v", err)
			}
		}
		m.dev.Close()
	}
}

// path is name inside the mount.
func (m *testMount) path(name string) string { return filepath.Join(m.dir, name) }
