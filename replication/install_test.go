package replication

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// heldSource is a snapshot source whose first snapshot stops at its
// first file's content until released: an install that takes as long as
// the test wants, while the primary keeps writing.
type heldSource struct {
	m        *model
	once     sync.Once
	started  chan struct{} // closed when the held install reads its first file
	release  chan struct{} // closed by the test
	snapshot int           // snapshots taken
	mu       sync.Mutex
}

func newHeldSource(m *model) *heldSource {
	return &heldSource{m: m, started: make(chan struct{}), release: make(chan struct{})}
}

// source streams the model's snapshot: contents left out, read through
// Content as the install sends them (as the actor's source does).
func (h *heldSource) source(ctx context.Context) (*Snapshot, error) {
	snap, err := h.m.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.snapshot++
	first := h.snapshot == 1
	h.mu.Unlock()
	data := map[uint64][]byte{}
	for i := range snap.Inodes {
		in := &snap.Inodes[i]
		if len(in.Data) > 0 {
			data[in.Ino], in.DataLen, in.Data = in.Data, int64(len(in.Data)), nil
		}
	}
	snap.Content = func(ino uint64) ([]Extent, []byte, error) {
		if first {
			h.once.Do(func() { close(h.started) })
			<-h.release
		}
		return nil, data[ino], nil
	}
	return snap, nil
}

// fillBehind writes files while replica 2 is down, past the log's bound:
// it will need a snapshot. It returns the last lsn.
func fillBehind(t *testing.T, c *testCluster, p *Primary, m *model, files, size int) uint64 {
	t.Helper()
	waitConnected(t, p)
	c.kill(2)
	var last uint64
	for i := range files {
		_, last = m.writeFile(RootIno, fmt.Sprintf("behind-%03d", i), bytes.Repeat([]byte{byte(i + 1)}, size))
	}
	mustWait(t, p, last, 20*time.Second)
	return last
}

// writeDuring overwrites files while the held install runs: n records of
// size bytes, each durable on the other two replicas.
func writeDuring(t *testing.T, p *Primary, m *model, n, size int) uint64 {
	t.Helper()
	ino, _ := m.writeFile(RootIno, "during", nil)
	var last uint64
	for i := range n {
		content := bytes.Repeat([]byte{byte(i + 7)}, size)
		last = m.append(&Record{Op: OpData, Ino: ino, Attr: fileAttr(len(content)), Data: content})
		mustWait(t, p, last, 20*time.Second)
	}
	return last
}

// TestInstallCatchesUpWhileWriting: a replica far behind gets a snapshot
// whose install takes longer than it takes the primary to write more than
// its log bound; the records after the snapshot's LSN stay in the log for
// it, so it catches up after one install and needs no second one. Before
// the pin, the log dropped them while the install ran: the replica came
// back "log starts after the replica's lsn", took another snapshot, and
// under writes that never stop, another, forever (issue 9, finding 3).
func TestInstallCatchesUpWhileWriting(t *testing.T) {
	c := makeCluster(t, 3)
	cfg := c.primaryConfig(vol)
	cfg.MaxLogBytes = 64 << 10
	p, m := c.openPrimary(cfg)
	fillBehind(t, c, p, m, 40, 8<<10) // 320 KiB, 5× the log
	held := newHeldSource(m)
	p.SetSnapshotSource(held.source)

	c.restart(2)
	waitOrFail(t, "the install to start", held.started)
	last := writeDuring(t, p, m, 24, 8<<10) // 192 KiB after the snapshot: 3× the log
	close(held.release)

	st := caughtUp(t, c, p, m, last)
	if st.Installs != 1 || st.Resyncs != 1 || st.Repeats != 0 || st.Overflows != 0 || held.snapshots() != 1 {
		t.Fatalf("want one install and no repeat: installs %d, resyncs %d, repeats %d, overflows %d, snapshots %d",
			st.Installs, st.Resyncs, st.Repeats, st.Overflows, held.snapshots())
	}
	if lb := p.Status().LogBytes; lb > cfg.MaxLogBytes {
		t.Fatalf("log holds %d bytes after the catch-up, bound %d", lb, cfg.MaxLogBytes)
	}
}

// TestInstallOutrunStopsAndWaits: the writes during an install pass even
// the pin's bound (the snapshot's size): the install stops at once, the
// log drops what it kept, and the next install waits before it starts; it
// then converges.
func TestInstallOutrunStopsAndWaits(t *testing.T) {
	c := makeCluster(t, 3)
	cfg := c.primaryConfig(vol)
	cfg.MaxLogBytes = 32 << 10
	p, m := c.openPrimary(cfg)
	fillBehind(t, c, p, m, 8, 8<<10) // 64 KiB: the snapshot's size bounds the pin
	held := newHeldSource(m)
	p.SetSnapshotSource(held.source)

	c.restart(2)
	waitOrFail(t, "the install to start", held.started)
	last := writeDuring(t, p, m, 20, 8<<10) // 160 KiB: past the pin's bound
	testsupport.WaitFor(t, 10*time.Second, "the overflow", func() bool { return p.Status().Replicas[2].Overflows == 1 })
	if lb := p.Status().LogBytes; lb > cfg.MaxLogBytes {
		t.Fatalf("log holds %d bytes after the overflow, bound %d", lb, cfg.MaxLogBytes)
	}
	close(held.release)

	st := caughtUp(t, c, p, m, last)
	if st.Installs != 2 || st.Resyncs != 1 || st.Overflows != 1 || st.Repeats != 1 {
		t.Fatalf("want the outrun install and one more: installs %d, resyncs %d, overflows %d, repeats %d",
			st.Installs, st.Resyncs, st.Overflows, st.Repeats)
	}
}

// caughtUp waits until replica 2, the one fillBehind left behind, holds
// last and m's state, and the primary's link to it installs no more and has
// last acknowledged; it returns that link's status.
func caughtUp(t *testing.T, c *testCluster, p *Primary, m *model, last uint64) ReplicaStatus {
	t.Helper()
	c.waitForLSN(vol, last, 2)
	sameState(t, c, 2, m)
	testsupport.WaitFor(t, 20*time.Second, "the replica to catch up", func() bool {
		st := p.Status().Replicas[2]
		return !st.Installing && st.Acked == last
	})
	return p.Status().Replicas[2]
}

func (h *heldSource) snapshots() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.snapshot
}

func waitOrFail(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// TestNoSnapshotForADownReplica: a replica that needs a snapshot and does
// not answer costs the primary no snapshot — each one is a walk of the
// actor's volume — however often its link retries; once back, it gets one.
func TestNoSnapshotForADownReplica(t *testing.T) {
	c := makeCluster(t, 3)
	cfg := c.primaryConfig(vol)
	cfg.MaxLogBytes = 64 << 10
	p, m := c.openPrimary(cfg)
	fillBehind(t, c, p, m, 16, 8<<10)
	held := newHeldSource(m)
	p.SetSnapshotSource(held.source)

	c.restart(2)
	waitOrFail(t, "the install to start", held.started)
	c.kill(2) // the install fails; the link retries every 10-200 ms
	close(held.release)
	testsupport.WaitFor(t, 10*time.Second, "the failed install to be over", func() bool {
		return !p.Status().Replicas[2].Installing
	})
	// A counter after a synchronising event, not a sleep: five more
	// sessions tried, each of which would have taken a snapshot.
	tried := p.links[2].sessions.Load()
	testsupport.WaitFor(t, 20*time.Second, "five more sessions of link 2", func() bool { return p.links[2].sessions.Load() >= tried+5 })
	if n := held.snapshots(); n != 1 {
		t.Fatalf("%d snapshots taken for a replica that was down", n)
	}
	c.restart(2)
	_, last := m.writeFile(RootIno, "after", []byte("back"))
	c.waitForLSN(vol, last, 2)
	sameState(t, c, 2, m)
}
