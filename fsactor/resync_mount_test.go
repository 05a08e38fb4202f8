package fsactor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jacobsa/fuse/fuseops"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// TestMountResync: a follower resynced in place shows the snapshot's
// names at once, with 60 s caches: removed names are gone, replaced ones
// name the new inode, new ones appear; a file open on an inode that
// vanished reads to its end.
func TestMountResync(t *testing.T) {
	needMount(t)
	m, p := followerMount(t)
	q := p.mkdir(rootIno, "q", 0o755)
	p.mkfile(q, "gone", "vanishes while open")
	p.mkfile(q, "replaced", "old")
	p.mkfile(q, "chg", "old content")
	ship(t, m, p)
	for _, n := range []string{"q/gone", "q/replaced", "q/chg", "q/new"} {
		statIno(m.path(n)) // cached: positive and negative entries
	}
	if got, _ := readRaw(m.path("q/chg")); got != "old content" {
		t.Fatalf("q/chg reads %q", got)
	}
	fd, err := syscall.Open(m.path("q/gone"), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	// The primary moves on; the follower misses the records.
	p.must(&fuseops.UnlinkOp{Parent: id(q), Name: "gone"})
	p.mkfile(q, "new", "a new message")
	p.mkfile(rootIno, "tmp", "the new inode")
	p.must(&fuseops.RenameOp{OldParent: 1, OldName: "tmp", NewParent: id(q), NewName: "replaced"})
	chg := p.st.inodes[q].dir.lookup("chg")
	w := p.open(chg, syscall.O_WRONLY)
	p.write(chg, w, 0, "new content!")
	p.release(w)
	p.take()
	snap, err := p.st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := m.srv.Resync(ctx, snap); err != nil {
		t.Fatal(err)
	}
	if got := m.srv.AppliedLSN(); got != snap.LSN {
		t.Fatalf("AppliedLSN %d after resync to %d", got, snap.LSN)
	}
	repl := p.st.inodes[q].dir.lookup("replaced")
	testsupport.WaitForErr(t, deadline, "the resync to show on the mount", func() error {
		if _, err := statIno(m.path("q/gone")); !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("q/gone: %v", err)
		}
		if ino, err := statIno(m.path("q/replaced")); err != nil || ino != repl {
			return fmt.Errorf("q/replaced is inode %d (%v), want %d", ino, err, repl)
		}
		if got, err := readRaw(m.path("q/new")); err != nil || got != "a new message" {
			return fmt.Errorf("q/new reads %q, %v", got, err)
		}
		if got, err := readRaw(m.path("q/chg")); err != nil || got != "new content!" {
			return fmt.Errorf("q/chg reads %q, %v", got, err)
		}
		return nil
	})
	if got, err := readFd(fd); err != nil || got != "vanishes while open" {
		t.Fatalf("the open file that vanished reads %q, %v", got, err)
	}
}

// recordSink keeps every record (contents read) and holds each Wait
// until released: what a FLUSH after a promotion must reach.
type recordSink struct {
	mu      sync.Mutex
	recs    []*Record
	head    uint64
	durable uint64
	waiting chan uint64
	release chan struct{}
}

func (s *recordSink) Append(r *Record) {
	if r.Content != nil {
		r.Extents, r.Data, _ = r.Content.Read()
		r.Content.Release()
		r.Content = nil
	}
	s.mu.Lock()
	s.recs = append(s.recs, r)
	s.head = r.LSN
	s.mu.Unlock()
}

func (s *recordSink) Durable() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.durable
}

func (s *recordSink) Wait(ctx context.Context, lsn uint64) error {
	s.waiting <- lsn
	select {
	case <-s.release:
		s.mu.Lock()
		s.durable = max(s.durable, lsn)
		s.mu.Unlock()
		return nil
	case <-ctx.Done():
		return ErrNotDurable
	}
}

// TestMountPromote: a follower promoted without unmounting accepts writes;
// a FLUSH through a descriptor opened before the promotion ships the file
// to the new sink (numbered after the snapshot) and waits for it.
func TestMountPromote(t *testing.T) {
	needMount(t)
	m, p := followerMount(t)
	ino := p.mkfile(rootIno, "msg", "before")
	ship(t, m, p)
	old, err := syscall.Open(m.path("msg"), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkdir(m.path("d"), 0o755); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("mkdir on the follower: %v", err)
	}
	snap, _ := p.st.Snapshot()
	sink := &recordSink{waiting: make(chan uint64, 16), release: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := m.srv.Promote(ctx, sink, snap); err != nil {
		t.Fatal(err)
	}
	if err := m.srv.Promote(ctx, sink, snap); !errors.Is(err, ErrNotFollower) {
		t.Fatalf("a second Promote: %v", err)
	}
	fd, err := syscall.Open(m.path("msg"), syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open for writing after the promotion: %v", err)
	}
	if _, err := syscall.Pwrite(fd, []byte("after!"), 0); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- syscall.Close(old) }() // its FLUSH writes back and ships
	var lsn uint64
	select {
	case lsn = <-sink.waiting:
	case err := <-closed:
		t.Fatalf("close of the old descriptor returned (%v) without waiting for the sink", err)
	case <-time.After(deadline):
		t.Fatal("no durability wait after the promotion")
	}
	select {
	case err := <-closed:
		t.Fatalf("close returned (%v) before the record was durable", err)
	case <-time.After(50 * time.Millisecond): // not a wait for time: a check that it is still held
	}
	close(sink.release)
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}
	syscall.Close(fd)
	sink.mu.Lock() // not held across a request to the mount: the actor calls Durable
	recs := sink.recs
	sink.mu.Unlock()
	var data *Record
	for _, r := range recs {
		if r.Op == RecData && r.Ino == ino {
			data = r
		}
	}
	if data == nil || string(data.Data) != "after!" || recs[0].LSN != snap.LSN+1 || lsn < data.LSN {
		t.Fatalf("records after the promotion (snapshot lsn %d, waited for %d): %+v", snap.LSN, lsn, recs)
	}
	if err := syscall.Mkdir(m.path("d"), 0o755); err != nil {
		t.Fatalf("mkdir after the promotion: %v", err)
	}
}
