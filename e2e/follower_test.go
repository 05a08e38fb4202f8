package e2e

// The follower tests of issue 11 on real processes: three `spoolfs
// replica`, a primary `spoolfs mount --replicas` and a follower `spoolfs
// mount --follow` (follower_harness_test.go), on loopback. What the
// follower shows is compared with the primary's tree by names, inode
// numbers, modes, sizes and content; deletions are timed from the
// primary's unlink returning to the name being gone from the follower's
// stat and readdir with 60 s kernel caches; lookups and readdirs from 8
// clients race the deletions without hanging.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// followerWait bounds a wait for the follower to show a change.
const followerWait = 10 * time.Second

// writeFileSync writes data to path on the primary and closes it: once it
// returns, the file is durable (close returned 0).
func writeFileSync(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// patterned returns n bytes that differ with seed and offset.
func patterned(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7) + byte(i>>12)
	}
	return b
}

// writeSparse makes path a sparse file: 4 KiB at 8 MiB, size 16 MiB.
func writeSparse(t *testing.T, path string) {
	t.Helper()
	fd, err := unix.Open(path, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Pwrite(fd, patterned(9, 4096), 8<<20); err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(fd, 16<<20); err != nil {
		t.Fatal(err)
	}
	if err := unix.Close(fd); err != nil {
		t.Fatalf("close %s: %v", path, err)
	}
}

// cacheTree stats and reads every entry of the follower's tree, so that
// the kernel caches names, attributes and pages (60 s): a later remote
// change is visible only if the follower invalidates them.
func cacheTree(t *testing.T, dir string) {
	t.Helper()
	if _, err := inoTree(dir); err != nil {
		t.Fatalf("reading the follower's tree: %v", err)
	}
}

// TestFollowerMirrors: files created (empty, small, page-sized, large,
// sparse), written, renamed (also over an existing name), hard-linked,
// symlinked, chmodded, truncated, given xattrs and deleted on the primary
// show on the follower with the same names, inode numbers, modes, sizes
// and contents, each step waited for after the primary's calls returned,
// while the follower's kernel caches (60 s) hold the earlier state.
func TestFollowerMirrors(t *testing.T) {
	requireCluster(t)
	c := newCluster(t, 3)
	const vol = "follow-mirror"
	p := c.startPrimary(vol, "p1")
	f := c.startFollower(vol, "f1")
	for _, d := range []string{"a", "a/b", "c"} {
		if err := os.Mkdir(p.path(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sizes := map[string]int{"empty": 0, "one": 1, "page-1": 4095, "page": 4096, "odd": 65537, "big": 1<<20 + 3}
	i := byte(0)
	for name, n := range sizes {
		i++
		writeFileSync(t, p.path("a/"+name), patterned(i, n))
	}
	writeSparse(t, p.path("a/sparse"))
	waitSameTree(t, p.dir, f, followerWait, "after creating files")
	cacheTree(t, f.dir)

	// A name looked up on the follower before it exists (a negative
	// entry the kernel may cache for the entry timeout) shows once the
	// primary creates it.
	var st unix.Stat_t
	if err := unix.Stat(f.path("c/late"), &st); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("stat c/late on the follower before it exists: %v, want ENOENT", errName(err))
	}
	writeFileSync(t, p.path("c/late"), []byte("late"))
	testsupport.WaitForErr(t, followerWait, "c/late, looked up before it existed, to show on the follower", func() error {
		return unix.Stat(f.path("c/late"), &st)
	})
	waitSameTree(t, p.dir, f, followerWait, "after creating a name looked up before")

	mutate := []struct {
		what string
		do   func() error
	}{
		{"rename into a subdirectory", func() error { return os.Rename(p.path("a/one"), p.path("a/b/one-moved")) }},
		{"rename over an existing file", func() error { return os.Rename(p.path("a/page-1"), p.path("a/page")) }},
		{"hard link", func() error { return os.Link(p.path("a/odd"), p.path("c/odd-link")) }},
		{"symlink", func() error { return os.Symlink("../a/big", p.path("c/big-symlink")) }},
		{"chmod", func() error { return os.Chmod(p.path("a/big"), 0o600) }},
		{"overwrite smaller", func() error { return os.WriteFile(p.path("a/odd"), patterned(42, 100), 0o644) }},
		{"xattr", func() error { return unix.Setxattr(p.path("a/sparse"), "user.spool", []byte("queued"), 0) }},
		{"truncate", func() error { return os.Truncate(p.path("a/sparse"), 4<<20) }},
		{"rename a directory", func() error { return os.Rename(p.path("a/b"), p.path("c/b")) }},
	}
	for _, m := range mutate {
		if err := m.do(); err != nil {
			t.Fatalf("%s on the primary: %v", m.what, err)
		}
		waitSameTree(t, p.dir, f, followerWait, "after "+m.what)
		cacheTree(t, f.dir)
	}
	remove := []struct {
		what string
		do   func() error
	}{
		{"unlink one of two links", func() error { return os.Remove(p.path("a/odd")) }},
		{"unlink", func() error { return os.Remove(p.path("a/big")) }},
		{"unlink in a renamed directory", func() error { return os.Remove(p.path("c/b/one-moved")) }},
		{"rmdir", func() error { return os.Remove(p.path("c/b")) }},
		{"unlink a symlink", func() error { return os.Remove(p.path("c/big-symlink")) }},
	}
	for _, m := range remove {
		if err := m.do(); err != nil {
			t.Fatalf("%s on the primary: %v", m.what, err)
		}
		waitSameTree(t, p.dir, f, followerWait, "after "+m.what)
		cacheTree(t, f.dir)
	}
	if err := os.WriteFile(f.path("a/refused"), []byte("x"), 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("create on the follower: %v, want EROFS", errName(err))
	}
	f.stop(t)
	p.stop(t)
}

// Deletion latency: files, how long a name may stay visible at most.
const (
	deleteFiles    = 1000
	deleteDeadline = 5 * time.Second
)

// TestFollowerDeleteLatency: with 60 s entry and attribute timeouts on the
// follower, each of 1,000 files is first stat'ed there (the kernel caches
// its entry and attributes), then unlinked on the primary; the time from
// the unlink returning to the name being gone from the follower's stat
// AND readdir is measured. The p50/p99 are printed (issue 11's target,
// p99 ≤ 100 ms, is recorded in docs/benchmarks.md, not asserted on a
// shared machine); a name still visible after 5 s fails the test.
func TestFollowerDeleteLatency(t *testing.T) {
	p, f, names := followedQueue(t, "follow-delete", "q/msg-%04d", deleteFiles, func(i int, name string) []byte { return []byte(name) })
	testsupport.WaitForErr(t, 30*time.Second, "the follower to list every file", func() error {
		n, err := countDir(f.path("q"))
		if err == nil && n != deleteFiles {
			err = fmt.Errorf("%d of %d listed", n, deleteFiles)
		}
		return err
	})
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Stat(f.path(n), &st); err != nil {
			t.Fatalf("stat %s on the follower: %v", n, err)
		}
	}
	lat := make([]time.Duration, 0, deleteFiles)
	for _, n := range names {
		if err := unix.Unlink(p.path(n)); err != nil {
			t.Fatalf("unlink %s on the primary: %v", n, err)
		}
		d, err := timeGone(f.path(n), deleteDeadline)
		if err != nil {
			t.Fatalf("%s on the follower: %v", n, err)
		}
		lat = append(lat, d)
	}
	line := fmt.Sprintf("follower deletion latency (unlink on the primary returned → gone from stat and readdir on the follower, 60 s caches), %d deletions: p50 %v, p99 %v, max %v",
		len(lat), pct(lat, 50), pct(lat, 99), pct(lat, 100))
	t.Log(line)
	fmt.Println(line)
	f.stop(t)
	p.stop(t)
}

// createMany writes the files names (relative to dir) with content(i)
// from 8 goroutines: each close waits for the replicas, so one by one

// followedQueue starts three replicas, primary p1 of vol and follower f1
// with 60 s entry and attribute timeouts (the kernel keeps what it
// looked up: only notifications make a deletion visible), and writes n
// files named by format (in q/) on the primary, content(i, name) each.
func followedQueue(t *testing.T, vol, format string, n int, content func(i int, name string) []byte) (*primary, *follower, []string) {
	t.Helper()
	requireCluster(t)
	c := newCluster(t, 3)
	p := c.startPrimary(vol, "p1")
	f := c.startFollower(vol, "f1", "--entry-timeout", "60s", "--attr-timeout", "60s")
	if err := os.Mkdir(p.path("q"), 0o755); err != nil {
		t.Fatal(err)
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf(format, i)
	}
	createMany(t, p.dir, names, func(i int) []byte { return content(i, names[i]) })
	return p, f, names
}

// would take seconds.
func createMany(t *testing.T, dir string, names []string, content func(i int) []byte) {
	t.Helper()
	var next atomic.Int64
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		go func() {
			for i := int(next.Add(1) - 1); i < len(names); i = int(next.Add(1) - 1) {
				if err := os.WriteFile(filepath.Join(dir, names[i]), content(i), 0o644); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for w := 0; w < 8; w++ {
		if err := <-errs; err != nil {
			t.Fatalf("creating files on the primary: %v", err)
		}
	}
}

// countDir counts the entries of dir.
func countDir(dir string) (int, error) {
	ents, err := os.ReadDir(dir)
	return len(ents), err
}

// timeGone polls path's stat until ENOENT, then its directory's listing
// until the name is not in it, and returns how long that took; an error
// after deadline. The pauses are short (50 µs) so the figure is the
// follower's, not the poll's.
func timeGone(path string, deadline time.Duration) (time.Duration, error) {
	start := time.Now()
	dir, base := filepath.Dir(path), filepath.Base(path)
	var st unix.Stat_t
	for {
		err := unix.Stat(path, &st)
		if errors.Is(err, unix.ENOENT) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("stat: %w", err)
		}
		if time.Since(start) > deadline {
			return 0, fmt.Errorf("stat still answers (inode %d) %v after the unlink returned", st.Ino, deadline)
		}
		time.Sleep(50 * time.Microsecond)
	}
	for {
		listed, err := dirHas(dir, base)
		if err != nil {
			return 0, err
		}
		if !listed {
			return time.Since(start), nil
		}
		if time.Since(start) > deadline {
			return 0, fmt.Errorf("gone from stat but still listed by readdir %v after the unlink returned", deadline)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// dirHas says whether dir lists name.
func dirHas(dir, name string) (bool, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range ents {
		if e.Name() == name {
			return true, nil
		}
	}
	return false, nil
}

// pct is the p-th percentile of ds (100: the maximum).
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))].Round(time.Microsecond)
}

// Deadlock test: clients, files, and bounds.
const (
	lookupClients  = 8
	lookupFiles    = 600
	lookupStall    = 15 * time.Second // no client finished a pass this long: hung
	lookupDeadline = 90 * time.Second // the whole race
)

// TestFollowerLookupsDuringDeletes: deletions (and replacements) arriving
// at the follower while 8 clients run lookups (stat, open and read) and
// readdirs on the same directory never hang: the follower's notify_delete
// takes the kernel's directory lock that the clients' lookups hold, which
// deadlocks if the follower's actor waits for the notification
// (DESIGN.md, "The actor", 5). Each client must finish a pass every 15 s
// and the whole race end within 90 s; otherwise the follower's goroutines
// are dumped, its mount aborted, and the test fails.
func TestFollowerLookupsDuringDeletes(t *testing.T) {
	p, f, _ := followedQueue(t, "follow-lookups", "q/m%04d", lookupFiles, func(i int, _ string) []byte { return patterned(byte(i), 512) })
	testsupport.WaitForErr(t, 30*time.Second, "the follower to list every file", func() error {
		n, err := countDir(f.path("q"))
		if err == nil && n != lookupFiles {
			err = fmt.Errorf("%d of %d listed", n, lookupFiles)
		}
		return err
	})
	var stop atomic.Bool
	passes := make([]atomic.Int64, lookupClients)
	errs := make(chan error, lookupClients)
	var wg sync.WaitGroup
	for k := 0; k < lookupClients; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- lookupClient(f.path("q"), k, &stop, &passes[k])
		}()
	}
	deleted := make(chan error, 1)
	go func() { deleted <- deleteAll(p.path("q"), lookupFiles) }()
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()

	hung := watchPasses(passes, deleted, f)
	if hung != "" {
		f.dumpAndAbort(t, hung)
		stop.Store(true)
		<-finished
		return
	}
	stop.Store(true)
	select {
	case <-finished:
	case <-time.After(lookupStall):
		f.dumpAndAbort(t, "the clients did not stop")
		<-finished
		return
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	var total int64
	for k := range passes {
		total += passes[k].Load()
	}
	t.Logf("%d clients made %d passes (readdir + stat/open/read of each name) while %d files were deleted on the primary", lookupClients, total, lookupFiles)
	f.stop(t)
	p.stop(t)
}

// watchPasses waits until the deletions are done and the follower's
// directory is empty, while every client keeps finishing passes; it
// returns why it gave up ("" when all went well).
func watchPasses(passes []atomic.Int64, deleted chan error, f *follower) string {
	start := time.Now()
	last := make([]int64, len(passes))
	lastMove := make([]time.Time, len(passes))
	for k := range lastMove {
		lastMove[k] = start
	}
	delDone := false
	for {
		select {
		case err := <-deleted:
			if err != nil {
				return "deleting on the primary: " + err.Error()
			}
			delDone = true
		case <-time.After(100 * time.Millisecond):
		}
		for k := range passes {
			if n := passes[k].Load(); n != last[k] {
				last[k], lastMove[k] = n, time.Now()
			} else if time.Since(lastMove[k]) > lookupStall {
				return fmt.Sprintf("client %d finished no pass in %v (after %d passes)", k, lookupStall, n)
			}
		}
		if delDone && allMoved(lastMove, start) {
			if n, err := countDir(f.path("q")); err == nil && n == 0 {
				return ""
			}
		}
		if time.Since(start) > lookupDeadline {
			return fmt.Sprintf("the race did not end within %v", lookupDeadline)
		}
	}
}

// allMoved says whether every client finished a pass since start.
func allMoved(lastMove []time.Time, start time.Time) bool {
	for _, m := range lastMove {
		if !m.After(start) {
			return false
		}
	}
	return true
}

// lookupClient reads dir and looks up, opens and reads each listed name
// (and a name that never existed) until stop; ENOENT is the answer for a
// name deleted meanwhile, anything else an error.
func lookupClient(dir string, k int, stop *atomic.Bool, passes *atomic.Int64) error {
	buf := make([]byte, 4096)
	for !stop.Load() {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("client %d: readdir: %w", k, err)
		}
		for i, e := range ents {
			if (i+k)%2 == 0 {
				continue // neighbouring clients look up different halves
			}
			var st unix.Stat_t
			path := filepath.Join(dir, e.Name())
			if err := unix.Stat(path, &st); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("client %d: stat %s: %w", k, e.Name(), err)
			}
			if err := readSome(path, buf); err != nil {
				return fmt.Errorf("client %d: %w", k, err)
			}
		}
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(dir, fmt.Sprintf("never-%d", k)), &st); !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("client %d: stat of a name never made: %v, want ENOENT", k, errName(err))
		}
		passes.Add(1)
	}
	return nil
}

// readSome opens path and reads up to len(buf) bytes; ENOENT (deleted
// meanwhile) is no error.
func readSome(path string, buf []byte) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", filepath.Base(path), err)
	}
	defer unix.Close(fd)
	if _, err := unix.Read(fd, buf); err != nil {
		return fmt.Errorf("read %s: %w", filepath.Base(path), err)
	}
	return nil
}

// deleteAll deletes the files of the deadlock test on the primary, every
// third one replaced by a rename over it first (a name pointing elsewhere
// on the follower, then gone).
func deleteAll(dir string, n int) error {
	for i := 0; i < n; i++ {
		name := filepath.Join(dir, fmt.Sprintf("m%04d", i))
		if i%3 == 0 {
			tmp := name + ".new"
			if err := os.WriteFile(tmp, bytes.Repeat([]byte{'n'}, 300), 0o644); err != nil {
				return err
			}
			if err := os.Rename(tmp, name); err != nil {
				return err
			}
		}
		if err := os.Remove(name); err != nil {
			return err
		}
	}
	return nil
}
