package bench

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jacobsa/fuse"
	"github.com/jacobsa/fuse/fuseops"
	"github.com/jacobsa/fuse/fuseutil"
)

// hangFS answers GETATTR of its root and never answers LOOKUP until release
// is closed: a hung server.
type hangFS struct {
	fuseutil.NotImplementedFileSystem
	release chan struct{}
}

func (fs *hangFS) GetInodeAttributes(ctx context.Context, op *fuseops.GetInodeAttributesOp) error {
	op.Attributes = fuseops.InodeAttributes{Nlink: 1, Mode: 0o755 | os.ModeDir}
	return nil
}

func (fs *hangFS) LookUpInode(ctx context.Context, op *fuseops.LookUpInodeOp) error {
	<-fs.release
	return fuse.ENOENT
}

// fuseSys is a System that only says it is FUSE, for watch.
type fuseSys struct{ tmpfsSystem }

func (fuseSys) FUSE() bool { return true }

// TestWatchdogAbortsHungServer: a system call stuck on a server that never
// answers is released by the watchdog, which reports the hang.
func TestWatchdogAbortsHungServer(t *testing.T) {
	requireMount(t)
	dir := t.TempDir()
	fs := &hangFS{release: make(chan struct{})}
	mfs, err := fuse.Mount(dir, fuseutil.NewFileSystemServer(fs), &fuse.MountConfig{FSName: "bench-hang"})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		close(fs.release)
		unmountDir(dir, time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		mfs.Join(ctx)
	})
	wd := watch(&fuseSys{}, dir, 300*time.Millisecond)
	done := make(chan error, 1)
	go func() { _, err := os.Stat(filepath.Join(dir, "x")); done <- err }()
	select {
	case err := <-done:
		if err == nil || errors.Is(err, os.ErrNotExist) {
			t.Errorf("stat on a hung server: %v, want a connection error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the watchdog did not release the stuck stat")
	}
	if err := wd.stop(); err == nil || !strings.Contains(err.Error(), "hung") {
		t.Errorf("stop = %v, want the hang reported", err)
	}
}

// TestWatchdogQuietWhenInTime: a watchdog stopped in time reports nothing.
func TestWatchdogQuietWhenInTime(t *testing.T) {
	wd := watch(&fuseSys{}, "/nonexistent", time.Hour)
	if err := wd.stop(); err != nil {
		t.Errorf("stop = %v", err)
	}
	if err := watch(&tmpfsSystem{}, "/x", 0).stop(); err != nil {
		t.Errorf("non-FUSE stop = %v", err)
	}
}
