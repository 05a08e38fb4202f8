package replication

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
	"go.uber.org/zap"
)

// fakeTarget stands in for a follower's actor: it applies what the
// follower hands it to an in-memory store (the replicas' applier) and
// fails the test if it is ever handed something older than it holds.
type fakeTarget struct {
	t  testing.TB
	mu sync.Mutex
	st *volStore
	// lsn of the last record or snapshot applied; applied counts records,
	// resyncs snapshots.
	lsn              uint64
	applied, resyncs int
	// failAt, when not 0, makes ApplyRecords refuse a batch holding that
	// lsn once (a bad record).
	failAt uint64
	// acrossTerms: a Resync may go below the applied lsn (a snapshot of a
	// later term; the follower checks the (term, lsn) order itself).
	acrossTerms bool
	// report takes what the target finds wrong (nil: t.Errorf); check,
	// when set, checks the state after each batch (last: its last record).
	report func(error)
	check  func(last *Record, st *volStore)
	// slow, when set, runs before each batch is applied (a slow actor).
	slow func()
}

func newFakeTarget(t testing.TB, snap *Snapshot) *fakeTarget {
	f := &fakeTarget{t: t}
	f.install(snap)
	return f
}

func (f *fakeTarget) fail(format string, args ...any) error {
	err := fmt.Errorf("follow target: "+format, args...)
	if f.report != nil {
		f.report(err)
	} else {
		f.t.Error(err)
	}
	return err
}

func (f *fakeTarget) install(snap *Snapshot) {
	st, err := openVolStore("", 0, zap.NewNop())
	if err == nil {
		err = st.install(snap, meta{LSN: snap.LSN, NextIno: snap.NextIno, Initialized: true})
	}
	if err != nil {
		f.fail("install the snapshot at lsn %d: %v", snap.LSN, err)
		return
	}
	f.st, f.lsn = st, snap.LSN
}

func (f *fakeTarget) ApplyRecords(ctx context.Context, recs []Record) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.slow != nil {
		f.slow()
	}
	for i := range recs {
		if want := f.lsn + 1 + uint64(i); recs[i].LSN != want {
			return f.fail("ApplyRecords: record %d of the batch is lsn %d, want %d (applied %d)", i, recs[i].LSN, want, f.lsn)
		}
		if f.failAt != 0 && recs[i].LSN == f.failAt {
			f.failAt = 0
			return fmt.Errorf("bad record at lsn %d (test)", recs[i].LSN)
		}
	}
	v, done := f.st.view()
	m := f.st.meta
	for i := range recs {
		if err := (&applier{v: v, lim: Limits{}.withDefaults(), meta: &m}).apply(&recs[i]); err != nil {
			done()
			return f.fail("ApplyRecords: lsn %d: %v", recs[i].LSN, err)
		}
		m.LSN = recs[i].LSN
	}
	done()
	if err := f.st.commit(v, m); err != nil {
		return f.fail("commit: %v", err)
	}
	f.lsn = m.LSN
	f.applied += len(recs)
	if f.check != nil {
		f.check(&recs[len(recs)-1], f.st)
	}
	return nil
}

func (f *fakeTarget) Resync(ctx context.Context, snap *Snapshot) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if snap.LSN < f.lsn && !f.acrossTerms {
		f.fail("Resync to lsn %d, below the applied lsn %d", snap.LSN, f.lsn)
	}
	f.install(snap)
	f.resyncs++
	return nil
}

func (f *fakeTarget) state() (uint64, *Snapshot) {
	f.mu.Lock()
	defer f.mu.Unlock()
	snap, _, err := f.st.readSnapshot()
	if err != nil {
		f.fail("read the state: %v", err)
	}
	return f.lsn, snap
}

func (f *fakeTarget) counts() (applied, resyncs int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied, f.resyncs
}

func (c *testCluster) followerConfig(vol string) FollowerConfig {
	return FollowerConfig{Volume: vol, NodeID: "follower", Replicas: c.addrs(), Log: c.log,
		CallTimeout: 2 * time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
}

// startFollower opens a follower on the cluster and runs it on a fake
// target until the test ends.
func (c *testCluster) startFollower(cfg FollowerConfig) (*Follower, *fakeTarget) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f, snap, err := OpenFollower(ctx, cfg)
	if err != nil {
		c.t.Fatalf("open follower: %v", err)
	}
	target := newFakeTarget(c.t, snap)
	go f.Run(target)
	c.t.Cleanup(f.Close)
	return f, target
}

// waitFollower waits until target applied lsn and then holds what replica
// i holds.
func waitFollower(t *testing.T, c *testCluster, target *fakeTarget, lsn uint64, i int) {
	t.Helper()
	testsupport.WaitFor(t, 60*time.Second, fmt.Sprintf("follower at lsn %d", lsn), func() bool {
		got, _ := target.state()
		return got >= lsn
	})
	c.waitForLSN(vol, lsn, i)
	_, got := target.state()
	if want := c.snapshot(i, vol); !reflect.DeepEqual(want, got) {
		t.Fatalf("follower differs from replica %d:\nwant %+v\n got %+v", i, want, got)
	}
}

// waitStatus waits for f's Status to report lsn applied and returns it.
// The follower updates its status after the target's call returns (as a
// position applied, never one handed over), so a test that saw the
// target reach lsn must wait for the status to say so too.
func waitStatus(t *testing.T, f *Follower, lsn uint64) FollowerStatus {
	t.Helper()
	var st FollowerStatus
	testsupport.WaitFor(t, 30*time.Second, fmt.Sprintf("follower status at lsn %d", lsn), func() bool {
		st = f.Status()
		return st.LSN >= lsn
	})
	return st
}

// TestFollowerFollowsPrimary: a follower opened on a volume a primary
// writes shows every record the primary ships, a 3 MiB data record
// (several events of more_data) included, with the replicas' state.
func TestFollowerFollowsPrimary(t *testing.T) {
	c := makeCluster(t, 3)
	p, m := c.openPrimary(c.primaryConfig(vol))
	q := m.mkdir(RootIno, "queue")
	_, lsn := m.writeFile(q, "before", []byte("written before the follower"))
	mustWait(t, p, lsn, 10*time.Second)
	f, target := c.startFollower(c.followerConfig(vol))
	for i := range 20 {
		m.writeFile(q, fmt.Sprintf("msg-%d", i), []byte(fmt.Sprintf("body %d", i)))
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 200_000)
	_, lsn = m.writeFile(RootIno, "big", big)
	mustWait(t, p, lsn, 10*time.Second)
	waitFollower(t, c, target, lsn, 0)
	st := waitStatus(t, f, lsn)
	if st.LSN != lsn || st.Term != p.Term() || !st.Connected || st.Resyncs != 0 {
		t.Fatalf("status %+v, want lsn %d of term %d, connected, no resync", st, lsn, p.Term())
	}
}

// TestFollowerSwitchesReplica: the follower's source stops; it goes on
// from another replica, and from the first one again once it is back
// and the others are gone.
func TestFollowerSwitchesReplica(t *testing.T) {
	c := makeCluster(t, 3)
	p, m := c.openPrimary(c.primaryConfig(vol))
	f, target := c.startFollower(c.followerConfig(vol))
	_, lsn := m.writeFile(RootIno, "a", []byte("a"))
	mustWait(t, p, lsn, 10*time.Second)
	waitFollower(t, c, target, lsn, 0)
	first := indexOf(c, f.Status().Replica)
	c.kill(first)
	_, lsn = m.writeFile(RootIno, "b", []byte("b"))
	mustWait(t, p, lsn, 10*time.Second)
	other := (first + 1) % 3
	waitFollower(t, c, target, lsn, other)
	if st := f.Status(); st.Replica == c.reps[first].addr || st.Reconnects == 0 {
		t.Fatalf("status %+v: want another source than %s, a reconnect", st, c.reps[first].addr)
	}
	c.restart(first)
	c.waitForLSN(vol, lsn, first)
	for i := range 3 {
		if i != first {
			c.kill(i)
		}
	}
	// The primary has no quorum now, but what it ships reaches the one
	// replica left, and the follower follows that one.
	_, lsn = m.writeFile(RootIno, "c", []byte("c"))
	c.waitForLSN(vol, lsn, first)
	waitFollower(t, c, target, lsn, first)
	if _, resyncs := target.counts(); resyncs != 0 {
		t.Fatalf("%d resyncs, want none: every position stayed in the replicas' rings", resyncs)
	}
}

func indexOf(c *testCluster, addr string) int {
	for i, r := range c.reps {
		if r.addr == addr {
			return i
		}
	}
	c.t.Fatalf("%q is not a replica", addr)
	return -1
}

// TestFollowerResyncsFarBehind: with a small watch ring, a follower that
// starts watching after many records were written is told to resync, and
// loads a snapshot.
func TestFollowerResyncsFarBehind(t *testing.T) {
	c := makeCluster(t, 3, WithWatchBuffer(8<<10))
	p, m := c.openPrimary(c.primaryConfig(vol))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f, snap, err := OpenFollower(ctx, c.followerConfig(vol))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lsn uint64
	for i := range 50 {
		_, lsn = m.writeFile(RootIno, fmt.Sprintf("m%d", i), bytes.Repeat([]byte{'x'}, 1000))
	}
	mustWait(t, p, lsn, 10*time.Second)
	c.waitForLSN(vol, lsn)
	target := newFakeTarget(t, snap)
	go f.Run(target)
	waitFollower(t, c, target, lsn, 0)
	if _, resyncs := target.counts(); resyncs != 1 {
		t.Fatalf("target resyncs %d: want 1", resyncs)
	}
	if st := waitStatus(t, f, lsn); st.Resyncs != 1 {
		t.Fatalf("status %+v: want 1 resync", st)
	}
	// And it follows from there.
	_, lsn = m.writeFile(RootIno, "after", []byte("after"))
	mustWait(t, p, lsn, 10*time.Second)
	waitFollower(t, c, target, lsn, 0)
}

// TestFollowerResyncsAfterInstall: a snapshot installed on the replicas
// under a new term (a restore here; a new primary's recovery does the
// same) restarts their rings on another history; the follower loads it.
func TestFollowerResyncsAfterInstall(t *testing.T) {
	c := makeCluster(t, 3)
	p, m := c.openPrimary(c.primaryConfig(vol))
	_, lsn := m.writeFile(RootIno, "a", []byte("a"))
	mustWait(t, p, lsn, 10*time.Second)
	_, target := c.startFollower(c.followerConfig(vol))
	waitFollower(t, c, target, lsn, 0)
	_ = p.Close()
	snap, _ := m.snapshot(context.Background())
	snap.Inodes = append(snap.Inodes, SnapInode{Ino: snap.NextIno, Attr: fileAttr(8), Data: []byte("restored")})
	root := &snap.Inodes[0]
	root.Entries = append(root.Entries, SnapDirent{Name: "restored", Ino: snap.NextIno})
	snap.NextIno++
	cfg := c.primaryConfig(vol)
	cfg.NodeID = "restorer"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := Restore(ctx, cfg, snap); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 20*time.Second, "the follower to load the restored volume", func() bool {
		_, got := target.state()
		_, ok := find(got, "restored")
		return ok
	})
	if _, resyncs := target.counts(); resyncs != 1 {
		t.Fatalf("%d resyncs, want 1", resyncs)
	}
	waitFollower(t, c, target, snap.LSN, 0)
}

// TestFollowerResyncsOnBadRecord: a target that refuses a record gets a
// snapshot, never an older state, and the follower goes on.
func TestFollowerResyncsOnBadRecord(t *testing.T) {
	c := makeCluster(t, 3)
	p, m := c.openPrimary(c.primaryConfig(vol))
	_, target := c.startFollower(c.followerConfig(vol))
	target.mu.Lock()
	target.failAt = target.lsn + 2
	target.mu.Unlock()
	var lsn uint64
	for i := range 5 {
		_, lsn = m.writeFile(RootIno, fmt.Sprintf("m%d", i), []byte("x"))
	}
	mustWait(t, p, lsn, 10*time.Second)
	waitFollower(t, c, target, lsn, 0)
	if _, resyncs := target.counts(); resyncs != 1 {
		t.Fatalf("%d resyncs, want 1", resyncs)
	}
}

// TestFollowerSlowTargetIsNotASilentSource: a target that takes longer to
// apply a batch than the follower's silence bound (as the actor may with
// a 64 MiB record) does not make the follower take its source for dead:
// only time spent waiting for the replica counts. The record written after
// the slow batch is applied by the same stream: had the stream been taken
// for silent, a reconnect would come before it.
func TestFollowerSlowTargetIsNotASilentSource(t *testing.T) {
	c := makeCluster(t, 3, withWatchHeartbeat(20*time.Millisecond))
	p, m := c.openPrimary(c.primaryConfig(vol))
	cfg := c.followerConfig(vol)
	cfg.DeadAfter = 100 * time.Millisecond
	f, target := c.startFollower(cfg)
	target.mu.Lock()
	target.slow = func() { // the work of a slow actor, once: not a wait for a condition
		time.Sleep(5 * cfg.DeadAfter)
		target.slow = nil
	}
	target.mu.Unlock()
	_, lsn := m.writeFile(RootIno, "slow", []byte("x"))
	mustWait(t, p, lsn, 10*time.Second)
	waitFollower(t, c, target, lsn, 0)
	_, lsn = m.writeFile(RootIno, "after", []byte("y"))
	mustWait(t, p, lsn, 10*time.Second)
	waitFollower(t, c, target, lsn, 0)
	if st := f.Status(); st.Reconnects != 0 {
		t.Fatalf("status %+v: a slow target was taken for a silent source", st)
	}
}

// TestFollowerOpenReportsProgress: OpenFollower tells Progress how its
// snapshot loads — "fetch" counts that never go back and end at the
// snapshot's totals, then "done" with them — and Run's goroutine is never
// handed it.
func TestFollowerOpenReportsProgress(t *testing.T) {
	c := makeCluster(t, 3)
	p, m := c.openPrimary(c.primaryConfig(vol))
	for i := range 10 {
		m.writeFile(RootIno, fmt.Sprintf("m%d", i), bytes.Repeat([]byte{'x'}, 1000))
	}
	_, lsn := m.writeFile(RootIno, "big", bytes.Repeat([]byte("spoolfs!"), 3<<17)) // 3 MiB: several chunks
	mustWait(t, p, lsn, 10*time.Second)
	c.waitForLSN(vol, lsn)
	var got []Progress
	cfg := c.followerConfig(vol)
	cfg.Progress = func(p Progress) { got = append(got, p) }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f, snap, err := OpenFollower(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	inodes, data := uint64(len(snap.Inodes)), snapDataBytes(snap)
	if len(got) < 3 {
		t.Fatalf("progress %+v: want several fetch reports and done", got)
	}
	done, last := got[len(got)-1], got[len(got)-2]
	if done.Phase != "done" || done.Inodes != inodes || done.BytesTotal != data || done.Term != p.Term() {
		t.Fatalf("last report %+v: want done with %d inodes, %d bytes, term %d", done, inodes, data, p.Term())
	}
	if last.Phase != "fetch" || last.Inodes != inodes || last.InodesTotal != inodes || last.Bytes != data || last.BytesTotal != data {
		t.Fatalf("last fetch report %+v: want %d of %d inodes, %d of %d bytes", last, inodes, inodes, data, data)
	}
	for i, r := range got[:len(got)-1] {
		if r.Phase != "fetch" || r.Replica != last.Replica || (i > 0 && (r.Inodes < got[i-1].Inodes || r.Bytes < got[i-1].Bytes)) {
			t.Fatalf("report %d %+v after %+v: want fetch counts from %s that never go back", i, r, got[max(i-1, 0)], last.Replica)
		}
	}
	n := len(got)
	target := newFakeTarget(t, snap)
	go f.Run(target)
	_, lsn = m.writeFile(RootIno, "after", []byte("after"))
	mustWait(t, p, lsn, 10*time.Second)
	waitFollower(t, c, target, lsn, 0)
	if len(got) != n {
		t.Fatalf("progress reported after OpenFollower: %+v", got[n:])
	}
}
