package testsupport

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestAbortFUSE: a FUSE mount nobody serves is found by FUSEConn and
// aborted by AbortFUSE: a stat then fails at once (ENOTCONN) instead of
// hanging, the mount goes, and fusectl is left as it was found.
func TestAbortFUSE(t *testing.T) {
	RequireRoot(t, "mount(2) of /dev/fuse")
	RequireMount(t)
	ctlBefore := fusectlMounted()
	dir := t.TempDir()
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		Unavailable(t, "open /dev/fuse: %v", err)
	}
	defer unix.Close(fd)
	data := fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0", fd)
	if err := unix.Mount("testsupport", dir, "fuse.testsupport", unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		Unavailable(t, "mount %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	conn := FUSEConn(dir)
	if conn == "" {
		t.Fatalf("no FUSE connection found at %s", dir)
	}
	AbortFUSE(t, conn)
	done := make(chan error, 1)
	go func() {
		var st unix.Stat_t
		done <- unix.Stat(dir, &st)
	}()
	select {
	case err := <-done:
		if !errors.Is(err, unix.ENOTCONN) {
			t.Fatalf("stat of the aborted mount: %v, want ENOTCONN", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stat of the aborted mount still hangs after 10 s")
	}
	if err := unix.Unmount(dir, 0); err != nil {
		t.Fatalf("unmount of the aborted mount: %v", err)
	}
	if c := FUSEConn(dir); c != "" {
		t.Fatalf("connection %s still mounted at %s", c, dir)
	}
	if now := fusectlMounted(); now != ctlBefore {
		t.Fatalf("fusectl mounted %v after the abort, %v before", now, ctlBefore)
	}
}
