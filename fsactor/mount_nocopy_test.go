package fsactor

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// heldContentSink is a sink that reads data records' content off the
// actor, as replication does, in LSN order, but a large file's only once
// the test lets it (hold): it
// shows what the actor did before anyone read a byte. A record is durable
// once it and every record before it are, content read included.
type heldContentSink struct {
	hold    chan struct{} // closed: content may be read
	waiting chan uint64   // the lsn of each Wait that starts

	mu      sync.Mutex
	cond    *sync.Cond
	head    uint64
	durable uint64
	pending map[uint64]bool // data records whose content is unread
	data    map[uint64][]byte
	views   chan *Record  // data records for the reader
	bigRead atomic.Int32  // large contents (held ones) read so far
	bigLSN  atomic.Uint64 // the last large data record appended
	err     error
}

// heldSize is the size from which heldContentSink holds a content.
const heldSize = 1 << 20

func newHeldContentSink() *heldContentSink {
	s := &heldContentSink{hold: make(chan struct{}), waiting: make(chan uint64, 64),
		pending: map[uint64]bool{}, data: map[uint64][]byte{}, views: make(chan *Record, 64)}
	s.cond = sync.NewCond(&s.mu)
	go s.reader()
	return s
}

// Append implements Sink: a data record with a content view goes to the
// reader; the others are durable as soon as what precedes them is.
func (s *heldContentSink) Append(r *Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.head = r.LSN
	if r.Op == RecData && r.Attr.Size >= heldSize {
		s.bigLSN.Store(r.LSN)
		if r.Content == nil { // read by the actor, before the sink saw it
			s.bigRead.Add(1)
			s.data[r.Ino] = r.Data
		}
	}
	if r.Content != nil {
		s.pending[r.LSN] = true
		s.views <- r
	}
	s.advance()
}

// advance moves durable up to the first data record still unread
// (caller holds s.mu).
func (s *heldContentSink) advance() {
	for s.durable < s.head && !s.pending[s.durable+1] {
		s.durable++
	}
	s.cond.Broadcast()
}

// reader reads each data record's content once hold is closed.
func (s *heldContentSink) reader() {
	for r := range s.views {
		big := r.Attr.Size >= heldSize
		if big {
			<-s.hold
		}
		exts, b, err := r.Content.Read()
		r.Content.Release()
		if big {
			s.bigRead.Add(1)
		}
		s.mu.Lock()
		if err != nil && s.err == nil {
			s.err = fmt.Errorf("lsn %d: %w", r.LSN, err)
		}
		if exts != nil && s.err == nil {
			s.err = fmt.Errorf("lsn %d: extents %v, want none", r.LSN, exts)
		}
		s.data[r.Ino] = b
		delete(s.pending, r.LSN)
		s.advance()
		s.mu.Unlock()
	}
}

func (s *heldContentSink) Durable() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.durable
}

func (s *heldContentSink) Wait(ctx context.Context, lsn uint64) error {
	s.waiting <- lsn
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.durable < lsn {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", ErrNotDurable, ctx.Err())
		}
		s.cond.Wait()
	}
	return nil
}

// TestMountFlushLargeFileDoesNotStall: the FLUSH of a 64 MiB file returns
// on the actor without reading the file (its record carries a view), so
// while the record's content is still unread — the sink holds its reader
// — a stat and a create on the same mount are answered; then the reader
// reads it, and the close returns 0 with the 64 MiB shipped intact. Before
// views the actor read the whole file inside the FLUSH step, before the
// sink ever saw the record.
func TestMountFlushLargeFileDoesNotStall(t *testing.T) {
	needMount(t)
	sink := newHeldContentSink()
	m := mountTest(t, Config{FlushTimeout: time.Minute}, sink, nil)
	if err := writeRaw(m.path("other"), "x"); err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	want := make([]byte, size)
	for i := range want {
		want[i] = byte(i*7 + i>>20)
	}
	fd, err := syscall.Open(m.path("big"), syscall.O_CREAT|syscall.O_WRONLY|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < size; off += 1 << 20 {
		if _, err := syscall.Write(fd, want[off:off+1<<20]); err != nil {
			t.Fatal(err)
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- syscall.Close(fd) }()

	// The FLUSH step emitted the data record without reading the file,
	// and returned on the actor: its wait runs in a task.
	testsupport.WaitFor(t, deadline, "the data record of the 64 MiB file", func() bool { return sink.bigLSN.Load() != 0 })
	if n := sink.bigRead.Load(); n != 0 {
		t.Fatalf("the 64 MiB content was read (%d) before the sink got its record: a copy on the actor", n)
	}
	for lsn := uint64(0); lsn < sink.bigLSN.Load(); {
		select {
		case lsn = <-sink.waiting: // the first may be the close of "other"
		case <-time.After(deadline):
			t.Fatal("the close's FLUSH never waited for its data record")
		}
	}
	if n := sink.bigRead.Load(); n != 0 {
		t.Fatalf("%d contents read before the FLUSH returned on the actor", n)
	}
	sink.mu.Lock()
	unread := len(sink.pending)
	sink.mu.Unlock()
	if unread != 1 {
		t.Fatalf("FLUSH waits with %d data records unread, want the 64 MiB one", unread)
	}

	before := m.srv.OpCounts()
	within(t, deadline, "stat while the content is unread", func() error {
		var st syscall.Stat_t
		return syscall.Stat(m.path("other"), &st)
	})
	var created int
	within(t, deadline, "create while the content is unread", func() (err error) {
		created, err = syscall.Open(m.path("new"), syscall.O_CREAT|syscall.O_WRONLY|syscall.O_CLOEXEC, 0o644)
		return err
	})
	after := m.srv.OpCounts()
	if after["lookup"]+after["getattr"] <= before["lookup"]+before["getattr"] || after["create"] <= before["create"] {
		t.Fatalf("stat and create were not served by the server (counts %v → %v)", before, after)
	}
	if n := sink.bigRead.Load(); n != 0 {
		t.Fatalf("the content was read (%d) before the test let the sink read it", n)
	}
	select {
	case err := <-closed:
		t.Fatalf("close returned (%v) before its content was read", err)
	default:
	}

	close(sink.hold)
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("close after the content was read: %v", err)
		}
	case <-time.After(deadline):
		t.Fatal("close did not return after the content was read")
	}
	if err := syscall.Close(created); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if sink.err != nil {
		t.Fatal(sink.err)
	}
	var got []byte
	for _, b := range sink.data {
		if len(b) == size {
			got = b
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the shipped content (%d bytes) differs from what was written", len(got))
	}
	if n := m.srv.ContentCopies(); n != 0 {
		t.Fatalf("%d content copies, want none: the file did not change while its view was unread", n)
	}
}
