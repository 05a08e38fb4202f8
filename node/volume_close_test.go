package node

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/jacobsa/fuse"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/spoolfs/spoolfs/fsactor"
	"github.com/spoolfs/spoolfs/internal/config"
	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// snapshotWithFiles is a volume of n non-empty files in its root: each is
// a memfd once an actor is built from it.
func snapshotWithFiles(n int) *fsactor.Snapshot {
	root := fsactor.SnapInode{Ino: 1, Attr: fsactor.Attr{Mode: syscall.S_IFDIR | 0o755, Nlink: 2}}
	snap := &fsactor.Snapshot{LSN: 1, NextIno: uint64(n) + 2}
	for i := range n {
		ino := uint64(i) + 2
		data := []byte(fmt.Sprintf("message %d\n", i))
		snap.Inodes = append(snap.Inodes, fsactor.SnapInode{Ino: ino, Data: data,
			Attr: fsactor.Attr{Mode: syscall.S_IFREG | 0o644, Nlink: 1, Size: uint64(len(data))}})
		root.Entries = append(root.Entries, fsactor.SnapDirent{Name: fmt.Sprintf("m%d", i), Ino: ino})
	}
	snap.Inodes = append([]fsactor.SnapInode{root}, snap.Inodes...)
	return snap
}

// TestMountFailsAfterNewServer: a mount that fails after fsactor.NewServer
// (here jacobsa's fuse.Mount, made to fail) leaves no descriptor behind —
// no memfd of the volume's files, no eventfd, no /dev/fuse — no notify
// worker, and no mount.
func TestMountFailsAfterNewServer(t *testing.T) {
	requireFUSE(t)
	injected := errors.New("injected: fuse.Mount fails")
	fuseMount = func(string, fuse.Server, *fuse.MountConfig) (*fuse.MountedFileSystem, error) {
		return nil, injected
	}
	t.Cleanup(func() { fuseMount = fuse.Mount })
	o := config.DefaultMountOptions()
	o.Volume, o.Dir = "failing", newMountDir(t)
	log := zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))
	snap := snapshotWithFiles(20)

	fds, gs := countFDs(t), runtime.NumGoroutine()
	v, err := Mount(o, &fsactor.DiscardSink{}, snap, log)
	if !errors.Is(err, injected) {
		t.Fatalf("Mount = %v, %v; want the injected error", v, err)
	}
	if got := countFDs(t); got > fds {
		t.Errorf("after the failed mount %d descriptors are open, %d before", got, fds)
	}
	testsupport.WaitForErr(t, 30*time.Second, fmt.Sprintf("at most the %d goroutines from before the failed mount", gs), func() error {
		if n := runtime.NumGoroutine(); n > gs {
			return fmt.Errorf("%d goroutines run", n)
		}
		return nil
	})
	if at := fuseMountsAt(t, o.Dir); len(at) != 0 {
		t.Fatalf("still mounted after the failed mount: %+v", at)
	}
}

// countFDs counts the process's open descriptors.
func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting descriptors: %v", err)
	}
	return len(ents)
}
