package fsactor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jacobsa/fuse/fuseops"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// followerMount mounts a follower (60 s entry and attribute timeouts, as
// node mounts one) and returns it with a primary State that makes the
// records it follows: both start from the same snapshot.
func followerMount(t *testing.T) (*testMount, *harness) {
	t.Helper()
	p := newHarness(t, Config{})
	start, err := p.st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	m := mountDevice(t)
	srv, err := NewServer(Config{Follower: true, EntryTimeout: time.Minute, AttrTimeout: time.Minute,
		DisableWritebackCache: true, NotifyDev: m.dev, Log: zaptest.NewLogger(t)}, nil, start)
	if err != nil {
		t.Fatal(err)
	}
	m.srv = srv
	m.noWriteback = true // as node mounts a follower (Config.Follower says why)
	m.serve(t, srv)
	return m, p
}

// ship hands the primary's records since the last call to the follower.
func ship(t testing.TB, m *testMount, p *harness) {
	t.Helper()
	recs := p.take()
	batch := make([]Record, len(recs))
	for i, r := range recs {
		batch[i] = *r
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := m.srv.ApplyRecords(ctx, batch); err != nil {
		t.Fatalf("ApplyRecords: %v", err)
	}
}

// statIno returns path's inode number (raw stat: see the note above writeRaw).
func statIno(path string) (uint64, error) {
	var st syscall.Stat_t
	err := syscall.Stat(path, &st)
	return st.Ino, err
}

// readRaw reads a whole file through a raw descriptor.
func readRaw(path string) (string, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer syscall.Close(fd)
	return readFd(fd)
}

func readFd(fd int) (string, error) {
	var out []byte
	buf := make([]byte, 64<<10)
	for off := int64(0); ; {
		n, err := syscall.Pread(fd, buf, off)
		if err != nil {
			return "", err
		}
		if n == 0 {
			return string(out), nil
		}
		out, off = append(out, buf[:n]...), off+int64(n)
	}
}

// TestMountFollowEveryOp: records of every op applied to a follower are
// visible through its mount with the primary's inode numbers and
// contents, and every mutation on the mount answers EROFS.
func TestMountFollowEveryOp(t *testing.T) {
	needMount(t)
	m, p := followerMount(t)
	// The kernel caches the names before they change: the notes must undo it.
	q := p.mkdir(rootIno, "q", 0o755)
	p.mkfile(q, "df1", "old content")
	ship(t, m, p)
	for _, name := range []string{"q", "q/df1", "q/df2", "victim", "moved"} {
		statIno(m.path(name)) // positive and negative entries, cached 60 s
	}
	if got, err := readRaw(m.path("q/df1")); err != nil || got != "old content" {
		t.Fatalf("read q/df1: %q, %v", got, err)
	}
	everyOpAfter(p, q)
	ship(t, m, p)
	snap, err := p.st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	paths := map[uint64]string{rootIno: ""}
	for _, si := range snap.Inodes { // parents come before children: numbers grow
		for _, e := range si.Entries {
			paths[e.Ino] = paths[si.Ino] + "/" + e.Name
		}
	}
	testsupport.WaitForErr(t, deadline, "the follower's mount to show the primary's volume", func() error {
		for _, si := range snap.Inodes {
			if err := checkFollowed(m, si, paths[si.Ino]); err != nil {
				return err
			}
		}
		for _, gone := range []string{"q/df1", "victim/x", "moved", "q/fifo"} {
			if _, err := statIno(m.path(gone)); !errors.Is(err, syscall.ENOENT) {
				return fmt.Errorf("stat %s: %v, want ENOENT", gone, err)
			}
		}
		return nil
	})
	checkEROFS(t, m)
}

// everyOpAfter is everyOp's workload on a volume that has q/df1 already.
func everyOpAfter(p *harness, q uint64) {
	f := p.st.inodes[q].dir.lookup("df1")
	p.must(&fuseops.SetXattrOp{Inode: id(f), Name: "user.a", Value: []byte("1")})
	fh := p.open(f, syscall.O_WRONLY)
	p.write(f, fh, 0, "new content, longer")
	p.release(fh)
	p.mkfile(q, "df2", "to be replaced")
	sub := p.mkdir(q, "sub", 0o700)
	p.must(&fuseops.CreateSymlinkOp{Parent: id(q), Name: "ln", Target: "df2"})
	p.must(&fuseops.MkNodeOp{Parent: id(q), Name: "fifo", Mode: os.ModeNamedPipe | 0o600})
	p.must(&fuseops.MkNodeOp{Parent: id(q), Name: "null", Mode: os.ModeDevice | os.ModeCharDevice | 0o666, Rdev: 0x103})
	p.must(&fuseops.CreateLinkOp{Parent: id(sub), Name: "hard", Target: id(f)})
	mode := os.FileMode(0o640)
	p.must(&fuseops.SetInodeAttributesOp{Inode: id(f), Mode: &mode})
	p.must(&fuseops.RenameOp{OldParent: id(q), OldName: "df1", NewParent: id(q), NewName: "df2"})
	p.must(&fuseops.RenameOp{OldParent: id(q), OldName: "sub", NewParent: id(rootIno), NewName: "moved"})
	p.must(&fuseops.RenameOp{OldParent: id(rootIno), OldName: "moved", NewParent: id(rootIno), NewName: "sub2"})
	p.mkdir(rootIno, "victim", 0o755)
	p.must(&fuseops.RmDirOp{Parent: id(rootIno), Name: "victim"})
	p.must(&fuseops.UnlinkOp{Parent: id(q), Name: "fifo"})
	size := uint64(3)
	p.must(&fuseops.SetInodeAttributesOp{Inode: id(f), Size: &size})
}

// checkFollowed compares one inode of the primary with what the mount shows.
func checkFollowed(m *testMount, si SnapInode, path string) error {
	var st syscall.Stat_t
	if err := syscall.Lstat(m.path(path), &st); err != nil {
		return fmt.Errorf("lstat %q: %w", path, err)
	}
	a := si.Attr
	if st.Ino != si.Ino || st.Mode != a.Mode || uint32(st.Nlink) != a.Nlink || uint64(st.Size) != a.Size ||
		uint32(st.Rdev) != a.Rdev {
		return fmt.Errorf("%q: ino %d mode %#o nlink %d size %d rdev %#x, primary %d %#o %d %d %#x",
			path, st.Ino, st.Mode, st.Nlink, st.Size, st.Rdev, si.Ino, a.Mode, a.Nlink, a.Size, a.Rdev)
	}
	switch a.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		got, err := readRaw(m.path(path))
		want := string(si.Data)
		if err != nil || got[:len(want)] != want {
			return fmt.Errorf("%q reads %q (%v), primary %q", path, got, err, want)
		}
	case syscall.S_IFLNK:
		if got, err := os.Readlink(m.path(path)); err != nil || got != si.Target {
			return fmt.Errorf("%q points to %q (%v), primary %q", path, got, err, si.Target)
		}
	case syscall.S_IFDIR:
		names, err := dirNames(m.path(path))
		want := make([]string, 0, len(si.Entries))
		for _, e := range si.Entries {
			want = append(want, e.Name)
		}
		slices.Sort(names)
		slices.Sort(want)
		if err != nil || !slices.Equal(names, want) {
			return fmt.Errorf("%q lists %q (%v), primary %q", path, names, err, want)
		}
	}
	return nil
}

// checkEROFS tries every mutation on the follower's mount.
func checkEROFS(t *testing.T, m *testMount) {
	t.Helper()
	tries := map[string]func() error{
		"mkdir": func() error { return syscall.Mkdir(m.path("new"), 0o755) },
		"creat": func() error { return writeRaw(m.path("new"), "x") },
		"open rw": func() error {
			fd, err := syscall.Open(m.path("q/df2"), syscall.O_RDWR, 0)
			syscall.Close(fd)
			return err
		},
		"unlink":   func() error { return syscall.Unlink(m.path("q/df2")) },
		"rmdir":    func() error { return syscall.Rmdir(m.path("sub2")) },
		"rename":   func() error { return syscall.Rename(m.path("q/df2"), m.path("q/x")) },
		"link":     func() error { return syscall.Link(m.path("q/df2"), m.path("q/y")) },
		"symlink":  func() error { return syscall.Symlink("a", m.path("q/s")) },
		"mknod":    func() error { return syscall.Mknod(m.path("q/n"), syscall.S_IFIFO|0o600, 0) },
		"chmod":    func() error { return syscall.Chmod(m.path("q/df2"), 0o600) },
		"truncate": func() error { return syscall.Truncate(m.path("q/df2"), 0) },
		"setxattr": func() error { return unix.Setxattr(m.path("q/df2"), "user.x", []byte("v"), 0) },
		"rmxattr":  func() error { return unix.Removexattr(m.path("q/df2"), "user.a") },
	}
	for what, try := range tries {
		if err := try(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s on a follower: %v, want EROFS", what, err)
		}
	}
}

// TestMountFollowDeleteLatency: with 60 s entry and attribute timeouts, a
// name deleted by ApplyRecords is gone from stat (and from readdir) as
// soon as the notify worker wrote its notify_delete: measured from
// ApplyRecords' call to the first stat that answers ENOENT, over 1,000
// deletions (200 with -short), p50 and p99 printed.
func TestMountFollowDeleteLatency(t *testing.T) {
	needMount(t)
	m, p := followerMount(t)
	n := 1000
	if testing.Short() {
		n = 200
	}
	q := p.mkdir(rootIno, "q", 0o755)
	for i := range n {
		p.mkfile(q, "m"+strconv.Itoa(i), "msg")
	}
	ship(t, m, p)
	for i := range n { // every name in the kernel's cache
		if _, err := statIno(m.path("q/m" + strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	lat := make([]time.Duration, 0, n)
	for i := range n {
		name := "m" + strconv.Itoa(i)
		p.must(&fuseops.UnlinkOp{Parent: id(q), Name: name})
		start := time.Now()
		ship(t, m, p)
		for {
			_, err := statIno(m.path("q/" + name))
			if errors.Is(err, syscall.ENOENT) {
				break
			}
			if time.Since(start) > deadline {
				t.Fatalf("q/%s still stats (%v) %v after ApplyRecords; notify %+v", name, err, deadline, m.srv.NotifyStats())
			}
			runtime.Gosched()
		}
		lat = append(lat, time.Since(start))
		if i%100 == 0 {
			if names, err := dirNames(m.path("q")); err != nil || slices.Contains(names, name) {
				t.Fatalf("readdir after deleting %s: %v", name, err)
			}
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("follower deletion visible (ApplyRecords called → stat ENOENT), %d deletions: p50 %v, p99 %v, max %v; notify %+v",
		n, lat[n/2], lat[n*99/100], lat[n-1], m.srv.NotifyStats())
}

// TestMountFollowOpenFileDeleted: a file open on the follower when its
// last name is deleted remotely reads to the end through that descriptor;
// once closed (and forgotten by the kernel) its inode and memory go.
func TestMountFollowOpenFileDeleted(t *testing.T) {
	needMount(t)
	m, p := followerMount(t)
	body := string(make([]byte, 256<<10)) + "the end"
	ino := p.mkfile(rootIno, "msg", body)
	ship(t, m, p)
	fd, err := syscall.Open(m.path("msg"), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	p.must(&fuseops.UnlinkOp{Parent: 1, Name: "msg"})
	ship(t, m, p)
	testsupport.WaitFor(t, deadline, "msg to be gone from the mount", func() bool {
		_, err := statIno(m.path("msg"))
		return errors.Is(err, syscall.ENOENT)
	})
	got, err := readFd(fd)
	if err != nil || got != body {
		syscall.Close(fd)
		t.Fatalf("read through the open descriptor: %d bytes, %v", len(got), err)
	}
	syscall.Close(fd)
	testsupport.WaitForErr(t, deadline, "the deleted file's inode and memory to be freed", func() error {
		var live bool
		var used int64
		if err := m.srv.Do(context.Background(), func(st *State) {
			_, live = st.inodes[ino]
			used = st.used
		}); err != nil {
			return err
		}
		if live || used != 0 {
			return fmt.Errorf("inode %d live %v, %d bytes of memfds", ino, live, used)
		}
		return nil
	})
}

// TestMountFollowNoDeadlock: 8 goroutines stat and list one directory
// while ApplyRecords deletes and creates names in it; everything ends in
// bounded time. On a timeout the test prints every goroutine's stack and
// aborts the connection.
func TestMountFollowNoDeadlock(t *testing.T) {
	needMount(t)
	m, p := followerMount(t)
	q := p.mkdir(rootIno, "q", 0o755)
	const names = 64
	for i := range names {
		p.mkfile(q, "m"+strconv.Itoa(i), "x")
	}
	ship(t, m, p)
	rounds := 400
	if testing.Short() {
		rounds = 100
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var ops atomic.Uint64
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				if c%2 == 0 {
					dirNames(m.path("q"))
				} else {
					statIno(m.path("q/m" + strconv.Itoa(i%names)))
				}
				ops.Add(1)
			}
		}()
	}
	// The watchdog: a hang dumps every goroutine and aborts the
	// connection, which ends every call stuck on the mount.
	var hung atomic.Bool
	watch := time.AfterFunc(2*time.Minute, func() {
		hung.Store(true)
		buf := make([]byte, 1<<22)
		buf = buf[:runtime.Stack(buf, true)]
		t.Logf("no progress within 2 minutes; goroutines:\n%s", buf)
		testsupport.AbortFUSE(t, testsupport.FUSEConn(m.dir))
	})
	for r := range rounds {
		if hung.Load() {
			break
		}
		name := "m" + strconv.Itoa(r%names)
		p.must(&fuseops.UnlinkOp{Parent: id(q), Name: name})
		ship(t, m, p)
		p.mkfile(q, name, "again")
		ship(t, m, p)
	}
	stop.Store(true)
	wg.Wait()
	watch.Stop()
	if hung.Load() {
		t.Fatal("deletions with 8 clients reading the directory hung (stacks above)")
	}
	t.Logf("%d rounds of delete+create, %d client ops; notify %+v", rounds, ops.Load(), m.srv.NotifyStats())
}
