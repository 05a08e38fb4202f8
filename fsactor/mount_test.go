package fsactor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// within runs fn on its own goroutine and fails the test if it has not
// returned after d (a hung FUSE call must fail the test, not hang it).
func within(t *testing.T, d time.Duration, what string, fn func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- fn() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(d):
		t.Fatalf("%s: no answer within %v", what, d)
	}
}

// dirNames lists dir.
func dirNames(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, err
}

// The server of these mounts is this test process, which must never wait
// on its own mount where the Go runtime cannot serve it meanwhile:
//   - files on the mount are opened with raw system calls, never os.Open or
//     os.Create: those register the file with Go's netpoller, whose
//     epoll_ctl asks the FUSE server for FUSE_POLL while holding the epoll
//     instance's lock, and runtime threads polling the network block on
//     that lock;
//   - a child process never gets a cmd.Dir inside the mount: the vfork'ed
//     child does chdir before exec while the parent thread holds its P in
//     a raw syscall, and a garbage collection waiting for that P stops the
//     server from answering the chdir's GETATTR.
// Either way the process deadlocks in the kernel, unkillable, until its
// FUSE connection is aborted. A server in another process, as in
// production, is not affected.

// writeRaw creates (or truncates) path with data.
func writeRaw(path, data string) error {
	fd, err := syscall.Open(path, syscall.O_CREAT|syscall.O_WRONLY|syscall.O_TRUNC|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	if _, err := syscall.Write(fd, []byte(data)); err != nil {
		syscall.Close(fd)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := syscall.Close(fd); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

// holdFlush writes a file on m and closes it on another goroutine with the
// sink armed, so its FLUSH waits; it returns the close's result channel
// once the FLUSH is waiting.
func holdFlush(t *testing.T, m *testMount, sink *blockSink, name string) <-chan error {
	t.Helper()
	fd, err := syscall.Open(m.path(name), syscall.O_CREAT|syscall.O_WRONLY|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := syscall.Write(fd, []byte("a queued message\n")); err != nil {
		t.Fatal(err)
	}
	sink.arm()
	closed := make(chan error, 1)
	go func() { closed <- syscall.Close(fd) }()
	sink.awaitWait(t)
	return closed
}

// TestMountFlushHeld: on a real mount, a close() whose FLUSH waits for the
// sink does not stop stat and readdir of other files from being answered
// by the server; the close returns 0 once the sink says durable.
func TestMountFlushHeld(t *testing.T) {
	needMount(t)
	sink := newBlockSink()
	sink.disarmed = true
	m := mountTest(t, Config{FlushTimeout: time.Minute}, sink, nil) // no kernel caching
	if err := writeRaw(m.path("other"), "x"); err != nil {
		t.Fatal(err)
	}
	closed := holdFlush(t, m, sink, "held")

	before := m.srv.OpCounts()
	within(t, deadline, "stat while a flush waits", func() error {
		_, err := os.Stat(m.path("other"))
		return err
	})
	within(t, deadline, "readdir while a flush waits", func() error {
		names, err := dirNames(m.dir)
		if err == nil && (!slices.Contains(names, "held") || !slices.Contains(names, "other")) {
			t.Errorf("readdir while a flush waits: %q", names)
		}
		return err
	})
	after := m.srv.OpCounts()
	if after["lookup"]+after["getattr"] <= before["lookup"]+before["getattr"] {
		t.Fatalf("stat was not served by the server (counts %v → %v)", before, after)
	}
	select {
	case err := <-closed:
		t.Fatalf("close returned (%v) before the sink said durable", err)
	default:
	}

	sink.releaseWith(nil)
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("close after durable: %v", err)
		}
	case <-time.After(deadline):
		t.Fatal("close did not return after the sink said durable")
	}
}

// TestMountFlushTimeout: a close() whose data never becomes durable fails
// with EIO after the flush timeout.
func TestMountFlushTimeout(t *testing.T) {
	needMount(t)
	sink := newBlockSink()
	sink.disarmed = true
	m := mountTest(t, Config{FlushTimeout: 200 * time.Millisecond}, sink, nil)
	closed := holdFlush(t, m, sink, "lost")
	select {
	case err := <-closed:
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("close never durable: %v, want EIO", err)
		}
	case <-time.After(deadline):
		t.Fatal("close did not time out")
	}
}

// TestMountRemoveNameNotifies: with a one-hour entry timeout, a name the
// filesystem removes itself (Server.RemoveName) disappears from stat and ls
// at once: the notify pool told the kernel.
func TestMountRemoveNameNotifies(t *testing.T) {
	needMount(t)
	m := mountTest(t, Config{EntryTimeout: time.Hour, AttrTimeout: time.Hour}, nil, nil)
	if err := writeRaw(m.path("gone"), "msg"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(m.path("gone")); err != nil {
		t.Fatal(err)
	}
	if names, err := dirNames(m.dir); err != nil || !slices.Contains(names, "gone") {
		t.Fatalf("ls before: %q, %v", names, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := m.srv.RemoveName(ctx, 1, "gone"); err != nil {
		t.Fatalf("RemoveName: %v", err)
	}
	// The notification is written asynchronously: wait for its effect.
	testsupport.WaitForErr(t, deadline, "gone to leave the kernel's caches after RemoveName", func() error {
		_, serr := os.Stat(m.path("gone"))
		names, lerr := dirNames(m.dir)
		if errors.Is(serr, os.ErrNotExist) && lerr == nil && !slices.Contains(names, "gone") {
			return nil
		}
		return fmt.Errorf("stat %v, ls %q (%v); notify %+v", serr, names, lerr, m.srv.NotifyStats())
	})
	if st := m.srv.NotifyStats(); st.Sent == 0 {
		t.Fatalf("no notification sent: %+v", st)
	}
}

// TestMountCallerGid: a file created by a process running as uid 65534,
// gid 65533 belongs to them; the gid came from the FUSE in-header (fast
// path), not from /proc.
func TestMountCallerGid(t *testing.T) {
	needMount(t)
	m := mountTest(t, Config{}, nil, nil)
	pub := m.path("pub")
	if err := os.Mkdir(pub, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(pub, 0o777); err != nil { // past the umask
		t.Fatal(err)
	}
	// No cmd.Dir: the child would chdir into the mount between fork and
	// exec (see the note above writeRaw).
	cmd := exec.Command("sh", "-c", `touch "$1"`, "sh", m.path("pub/f"))
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: 65534, Gid: 65533, NoSetGroups: true},
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("touch as 65534:65533: %v: %s", err, out)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(m.path("pub/f"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 65534 || st.Gid != 65533 {
		t.Fatalf("file owned by %d:%d, want 65534:65533", st.Uid, st.Gid)
	}
	g := m.srv.loop.gids
	if g.fast.Load() == 0 || g.slow.Load() != 0 || g.failed.Load() != 0 {
		t.Fatalf("gid lookups: fast %d, slow %d, failed %d: want the fast path only",
			g.fast.Load(), g.slow.Load(), g.failed.Load())
	}
}

// TestMountInlineWakes: on a mount the reader is the actor, asleep in
// poll(2) while the kernel is idle; an internal event must still run
// promptly, woken through the eventfd, and the serving process must make
// no FUSE request to its own mount to get there (the old waker statfs'ed
// the mount point: docs/failures.md, finding 1).
func TestMountInlineWakes(t *testing.T) {
	m := mountTest(t, Config{}, nil, nil)
	if m.srv.loop.wk == nil {
		t.Fatal("a mount with NotifyDev should serve inline")
	}
	before := m.srv.OpCounts()
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ran := false
		err := m.srv.Do(ctx, func(*State) { ran = true })
		cancel()
		if err != nil || !ran {
			t.Fatalf("event %d on an idle inline actor: ran=%v err=%v", i, ran, err)
		}
	}
	if after := m.srv.OpCounts(); !maps.Equal(before, after) {
		t.Fatalf("waking the actor made FUSE requests: ops before %v, after %v", before, after)
	}
}
