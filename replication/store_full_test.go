package replication

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// TestFailedMarkerOnFullDisk: a commit that fails because the disk is full
// leaves no marker cut short. The marker is written when the disk has no
// room; the old markFailed created it, could not write the size and left
// it empty, and every later open refused the volume ("not a file size")
// even after space was freed: the replica stayed broken until someone
// removed the file by hand (found by make test-faults, disk-full).
func TestFailedMarkerOnFullDisk(t *testing.T) {
	dir := t.TempDir()
	if err := unix.Mount("spoolfs-test", dir, "tmpfs", 0, "size=1m"); err != nil {
		testsupport.Unavailable(t, "mount a small tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	path := filepath.Join(dir, "v.db")
	st := installBase(t, path)
	fill := filepath.Join(dir, "fill")
	fillDisk(t, fill)
	st.markFailed()
	st.close()
	if b, err := os.ReadFile(path + failedSuffix); err == nil {
		t.Logf("marker written on a full disk: %q", b)
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	st, err := openVolStore(path, 0, zap.NewNop())
	if err != nil {
		t.Fatalf("open after the disk had room again: %v", err)
	}
	st.close()
}

// fillDisk takes every free block of the file system with a file at path.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, unix.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
}
