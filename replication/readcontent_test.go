package replication

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// heldContent is a data record's content view as the actor hands it
// (volume.Content): Read blocks until hold is closed (nil: never blocks).
type heldContent struct {
	data     []byte
	hold     chan struct{}
	reads    atomic.Int32
	releases atomic.Int32
}

func (h *heldContent) Read() ([]Extent, []byte, error) {
	if h.hold != nil {
		<-h.hold
	}
	h.reads.Add(1)
	return nil, bytes.Clone(h.data), nil
}

func (h *heldContent) Release() { h.releases.Add(1) }

// appendWithContent applies a data record of content to the model, and
// appends it to the primary with the content as a view instead of bytes.
func appendWithContent(m *model, ino uint64, view *heldContent) uint64 {
	p := m.p
	m.p = nil // the model applies the record with its bytes
	lsn := m.append(&Record{Op: OpData, Ino: ino, Attr: fileAttr(len(view.data)), Data: view.data})
	m.p = p
	p.Append(&Record{LSN: lsn, Op: OpData, Ino: ino, Attr: fileAttr(len(view.data)), Content: view})
	return lsn
}

// checkLogBytes checks that the log's weight is the sum of its records'
// sizes, contents read since Append included.
func checkLogBytes(t *testing.T, p *Primary) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	var sum int64
	for _, r := range p.entries {
		sum += recordSize(r)
	}
	if sum != p.logBytes {
		t.Fatalf("log weighs %d bytes, its records %d", p.logBytes, sum)
	}
}

// TestContentReadOffAppend: a data record appended with a content view is
// read by the primary after Append returned, never sent before it has its
// bytes (nor anything after it), then released; the replicas end with the
// content, and the log's weight counts it.
func TestContentReadOffAppend(t *testing.T) {
	c := makeCluster(t, 3)
	p, m := c.openPrimary(c.primaryConfig(vol))
	ino := m.newIno()
	created := m.append(&Record{Op: OpCreate, Ino: ino, Parent: RootIno, Name: "big", Attr: fileAttr(0)})
	view := &heldContent{data: bytes.Repeat([]byte("spool"), 300_000), hold: make(chan struct{})}
	data := appendWithContent(m, ino, view) // returns at once: Read is held
	m.mkdir(RootIno, "after")

	c.waitForLSN(vol, created) // what precedes the data record ships
	if recs, ok := p.records(data, 10, 1<<30); !ok || len(recs) != 0 {
		t.Fatalf("records from the unread data record: %d (ok %v), want none", len(recs), ok)
	}
	if d := p.Durable(); d >= data {
		t.Fatalf("durable %d with lsn %d unread", d, data)
	}
	for i := range c.reps {
		if lsn := c.status(i, vol).Lsn; lsn >= data {
			t.Fatalf("replica %d at lsn %d before the content of %d was read", i, lsn, data)
		}
	}
	checkLogBytes(t, p)

	close(view.hold)
	mustWait(t, p, data+1, 10*time.Second)
	checkLogBytes(t, p)
	if r, rel := view.reads.Load(), view.releases.Load(); r != 1 || rel != 1 {
		t.Fatalf("content read %d times, released %d, want 1 and 1", r, rel)
	}
	c.waitForLSN(vol, data+1)
	for i := range c.reps {
		sameState(t, c, i, m)
	}
}

// TestContentReleasedWhenDropped: views the primary will never read are
// released: a record appended after Close, and one left unread when the
// primary stops.
func TestContentReleasedWhenDropped(t *testing.T) {
	c := makeCluster(t, 3)
	p, m := c.openPrimary(c.primaryConfig(vol))
	ino := m.newIno()
	m.append(&Record{Op: OpCreate, Ino: ino, Parent: RootIno, Name: "f", Attr: fileAttr(0)})
	first := &heldContent{data: []byte("one"), hold: make(chan struct{})}
	second := &heldContent{data: []byte("two")}
	appendWithContent(m, ino, first)
	appendWithContent(m, ino, second) // behind the first, which is held
	closed := make(chan struct{})
	go func() {
		_ = p.Close()
		close(closed)
	}()
	testsupport.WaitFor(t, 10*time.Second, "the primary stopping", func() bool { return p.ctx.Err() != nil })
	close(first.hold) // the reader finishes the first, then stops
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if r, rel := second.reads.Load(), second.releases.Load(); r != 0 || rel != 1 {
		t.Fatalf("the unread view: read %d times, released %d, want 0 and 1", r, rel)
	}
	late := &heldContent{data: []byte("late")}
	p.Append(&Record{LSN: p.headLSN() + 1, Op: OpData, Ino: ino, Attr: fileAttr(4), Content: late})
	if rel := late.releases.Load(); rel != 1 {
		t.Fatalf("a view appended after Close released %d times, want 1", rel)
	}
}
