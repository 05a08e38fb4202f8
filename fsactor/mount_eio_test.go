package fsactor

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// TestMountRenameEIOKernelForgets: a rename answered EIO after the flush
// timeout is applied in the volume (it stays in memory and in the log, to
// be shipped when replicas return), but the kernel, seeing the error,
// keeps its cache as before the call: the old name positive, the new one
// negative. With a one-hour entry timeout the published name was then in
// readdir and yet ENOENT to open and stat for an hour, and the old name
// answered from the cache (found by make test-faults: a deliverer looping
// on a message it could list and not open). The server now tells the
// kernel to forget both names when such a wait fails.
func TestMountRenameEIOKernelForgets(t *testing.T) {
	needMount(t)
	sink := newBlockSink()
	sink.disarmed = true
	m := mountTest(t, Config{FlushTimeout: 200 * time.Millisecond, EntryTimeout: time.Hour, AttrTimeout: time.Hour}, sink, nil)
	if err := writeRaw(m.path("msg-H.tmp"), "header"); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(m.path("msg-H"), &st); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("stat msg-H before the rename: %v, want ENOENT (now a cached negative entry)", err)
	}
	if err := syscall.Stat(m.path("msg-H.tmp"), &st); err != nil {
		t.Fatal(err)
	}
	sink.arm()
	if err := syscall.Rename(m.path("msg-H.tmp"), m.path("msg-H")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("rename never durable: %v, want EIO", err)
	}
	names, err := dirNames(m.dir)
	if err != nil || !slices.Contains(names, "msg-H") || slices.Contains(names, "msg-H.tmp") {
		t.Fatalf("readdir after the failed rename: %q, %v: want msg-H, the volume's state", names, err)
	}
	// The notes are written by the notify pool after the reply: wait for
	// their effect, well within the entry timeout.
	testsupport.WaitForErr(t, deadline, "the kernel to see the volume's state after the failed rename", func() error {
		newErr := syscall.Stat(m.path("msg-H"), &st)
		_, oldErr := os.Lstat(m.path("msg-H.tmp"))
		if newErr == nil && errors.Is(oldErr, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("stat msg-H %v (want found), stat msg-H.tmp %v (want ENOENT); notify %+v",
			newErr, oldErr, m.srv.NotifyStats())
	})
}
