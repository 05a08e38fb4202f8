package replication

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
	pb "github.com/spoolfs/spoolfs/proto"
)

// sameState compares a replica's copy with the model's.
func sameState(t *testing.T, c *testCluster, i int, m *model) {
	t.Helper()
	want, _ := m.snapshot(context.Background())
	got := c.snapshot(i, vol)
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("replica %d differs from the model:\nwant %+v\n got %+v", i, want, got)
	}
}

func TestRecordsFlowAndAck(t *testing.T) {
	c := makeCluster(t, 3)
	p, m := c.openPrimary(c.primaryConfig(vol))
	if p.Term() != 1 || p.Durable() != 0 {
		t.Fatalf("term %d durable %d", p.Term(), p.Durable())
	}
	q := m.mkdir(RootIno, "queue")
	ino, _ := m.writeFile(q, "msg-D", []byte("body"))
	big := bytes.Repeat([]byte("0123456789abcdef"), 200_000) // 3.2 MB: several chunks
	ino2, _ := m.writeFile(q, "big", big)
	m.append(&Record{Op: OpSetXattr, Ino: ino, XattrName: "user.k", Data: []byte("v")})
	m.append(&Record{Op: OpRename, Ino: ino, Parent: q, Name: "msg-D", NewParent: RootIno, NewName: "msg-H"})
	m.append(&Record{Op: OpLink, Ino: ino2, Parent: RootIno, Name: "big2", Attr: Attr{Mode: modeReg | 0o644, Nlink: 2, Size: uint64(len(big))}})
	last := m.append(&Record{Op: OpUnlink, Ino: ino2, Parent: q, Name: "big", Attr: Attr{Mode: modeReg | 0o644, Nlink: 1, Size: uint64(len(big))}})
	mustWait(t, p, last, 10*time.Second)
	if p.Durable() < last {
		t.Fatalf("durable %d after Wait(%d)", p.Durable(), last)
	}
	c.waitForLSN(vol, last)
	for i := range c.reps {
		sameState(t, c, i, m)
	}
	snap := c.snapshot(0, vol)
	if in, ok := find(snap, "msg-H"); !ok || string(in.Data) != "body" || string(in.Xattrs["user.k"]) != "v" {
		t.Fatalf("msg-H: %+v", in)
	}
	if _, ok := find(snap, "queue/msg-D"); ok {
		t.Fatal("renamed name still there")
	}
	if in, ok := find(snap, "big2"); !ok || !bytes.Equal(in.Data, big) {
		t.Fatal("big2 lost its content")
	}
	if got, want := c.status(0, vol).Inodes, uint64(len(mustSnap(m).Inodes)); got != want {
		t.Fatalf("replica status counts %d inodes, want %d", got, want)
	}
	st := p.Status()
	if st.Head != last || st.Durable < last || len(st.Replicas) != 3 {
		t.Fatalf("status %+v", st)
	}
}

// TestPipelining: many records in flight at once, few commits.
func TestPipelining(t *testing.T) {
	c := makeCluster(t, 3)
	p, m := c.openPrimary(c.primaryConfig(vol))
	var last uint64
	for i := 0; i < 2000; i++ {
		_, last = m.writeFile(RootIno, fmt.Sprintf("f%04d", i), []byte("x"))
	}
	mustWait(t, p, last, 30*time.Second)
	c.waitForLSN(vol, last)
	commits := c.status(0, vol).Commits
	t.Logf("%d records in %d commits on replica 0", last, commits)
	if commits >= last/2 {
		t.Fatalf("%d commits for %d records: no group commit", commits, last)
	}
}

// TestGapResend: a record lost on the way is resent from the replica's
// position.
func TestGapResend(t *testing.T) {
	c := makeCluster(t, 3)
	p, m := c.openPrimary(c.primaryConfig(vol))
	_, lsn := m.writeFile(RootIno, "a", []byte("1"))
	mustWait(t, p, lsn, 10*time.Second)
	c.waitForLSN(vol, lsn)
	p.testSkipLSN.Store(lsn + 1)
	_, last := m.writeFile(RootIno, "b", []byte("2"))
	mustWait(t, p, last, 10*time.Second)
	c.waitForLSN(vol, last)
	for i := range c.reps {
		sameState(t, c, i, m)
	}
	if p.testSkipLSN.Load() != 0 {
		t.Fatal("the record was never skipped")
	}
}

func TestOneReplicaDownStillDurable(t *testing.T) {
	c := makeCluster(t, 3)
	p, m := c.openPrimary(c.primaryConfig(vol))
	c.kill(2)
	_, lsn := m.writeFile(RootIno, "a", []byte("while one is down"))
	mustWait(t, p, lsn, 10*time.Second)
	c.restart(2)
	c.waitForLSN(vol, lsn, 2)
	sameState(t, c, 2, m)
}

// TestTwoReplicasDownNoQuorum: Wait fails with ErrNoQuorum within its
// timeout, and later Waits fail at once (the quorum is known lost); once
// the replicas are back the record arrives and a later Wait succeeds.
func TestTwoReplicasDownNoQuorum(t *testing.T) {
	c := makeCluster(t, 3)
	p, m := c.openPrimary(c.primaryConfig(vol))
	c.kill(1)
	c.kill(2)
	_, lsn := m.writeFile(RootIno, "a", []byte("kept in memory"))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	start := time.Now()
	err := p.Wait(ctx, lsn)
	cancel()
	if !errors.Is(err, ErrNoQuorum) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait with two replicas down: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("wait took %v", took)
	}
	_, lsn2 := m.writeFile(RootIno, "b", []byte("also kept"))
	start = time.Now()
	if err := p.Wait(context.Background(), lsn2); !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("wait after the quorum was lost: %v, want ErrNoQuorum at once", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("wait after the quorum was lost took %v, want at once", took)
	}
	if !p.Status().QuorumLost {
		t.Fatal("status does not say the quorum is lost")
	}
	c.restart(1)
	c.restart(2)
	waitDurable(t, p, lsn, 15*time.Second)
	mustWait(t, p, lsn2, 15*time.Second)
	if p.Status().QuorumLost {
		t.Fatal("status says the quorum is lost after the records became durable")
	}
	lsn = lsn2
	c.waitForLSN(vol, lsn)
	for i := range c.reps {
		sameState(t, c, i, m)
	}
}

// TestLogOverflowResync: a replica away while more than the log holds is
// written comes back through a snapshot.
func TestLogOverflowResync(t *testing.T) {
	c := makeCluster(t, 3)
	cfg := c.primaryConfig(vol)
	cfg.MaxLogBytes = 64 << 10
	p, m := c.openPrimary(cfg)
	c.kill(2)
	var last uint64
	for i := 0; i < 40; i++ {
		_, last = m.writeFile(RootIno, fmt.Sprintf("f%d", i), bytes.Repeat([]byte{byte(i)}, 8<<10))
	}
	mustWait(t, p, last, 10*time.Second)
	c.restart(2)
	c.waitForLSN(vol, last, 2)
	sameState(t, c, 2, m)
	testsupport.WaitFor(t, 10*time.Second, "the primary to count the resync", func() bool {
		return p.Status().Replicas[2].Resyncs > 0
	})
	_, last = m.writeFile(RootIno, "after", []byte("records again"))
	mustWait(t, p, last, 10*time.Second)
	c.waitForLSN(vol, last)
	sameState(t, c, 2, m)
}

// TestFencing: once a second primary holds a newer term, the first one's
// records fail with ErrFenced and none of them reaches a replica.
func TestFencing(t *testing.T) {
	c := makeCluster(t, 3)
	cfg := c.primaryConfig(vol)
	a, ma := c.openPrimary(cfg)
	_, lsn := ma.writeFile(RootIno, "before", []byte("durable"))
	mustWait(t, a, lsn, 10*time.Second)

	cfg.NodeID = "second"
	b, mb := c.openPrimary(cfg)
	if b.Term() <= a.Term() {
		t.Fatalf("second primary's term %d not above %d", b.Term(), a.Term())
	}
	if _, ok := find(mustSnap(mb), "before"); !ok {
		t.Fatal("the new primary lost a durable file")
	}
	_, stale := ma.writeFile(RootIno, "stale", []byte("must not land"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Wait(ctx, stale); !errors.Is(err, ErrFenced) {
		t.Fatalf("old primary's wait: %v", err)
	}
	if !a.Fenced() || !a.Status().Fenced {
		t.Fatal("old primary does not know it is fenced")
	}
	_, fresh := mb.writeFile(RootIno, "fresh", []byte("new term"))
	mustWait(t, b, fresh, 10*time.Second)
	c.waitForLSN(vol, fresh)
	for i := range c.reps {
		snap := c.snapshot(i, vol)
		if _, ok := find(snap, "stale"); ok {
			t.Fatalf("replica %d holds the fenced primary's file", i)
		}
		if _, ok := find(snap, "fresh"); !ok {
			t.Fatalf("replica %d lacks the new primary's file", i)
		}
	}
}

func mustSnap(m *model) *Snapshot {
	s, _ := m.snapshot(context.Background())
	return s
}

// putOneFile makes replica i hold volume vol as a term-4 primary wrote
// it: accepted term 4, a snapshot whose last term is lastTerm, at lsn, with
// one file, name (inode 4), in the root. The recovery tests set each
// replica's position with it.
func (c *testCluster) putOneFile(i int, lastTerm, lsn uint64, name string) {
	c.t.Helper()
	ctx := context.Background()
	cl := c.rawClient(i)
	if _, err := cl.Acquire(ctx, &pb.AcquireRequest{Volume: vol, Term: 4, NodeId: "raw"}); err != nil {
		c.t.Fatal(err)
	}
	snap := baseSnapshot()
	snap.LSN = lsn
	snap.NextIno = 5
	snap.Inodes[0].Entries = append(snap.Inodes[0].Entries, SnapDirent{Name: name, Ino: 4})
	snap.Inodes = append(snap.Inodes, SnapInode{Ino: 4, Attr: fileAttr(0)})
	if err := installSnapshot(ctx, cl, &pb.SnapshotHeader{Volume: vol, Term: 4, LastTerm: lastTerm, NodeId: "raw"}, snap, nil); err != nil {
		c.t.Fatal(err)
	}
}

// recordPhases makes cfg's Progress record each phase once, in the order
// they come; the slice it returns holds them.
func recordPhases(cfg *PrimaryConfig) *[]string {
	var phases []string
	cfg.Progress = func(pr Progress) {
		if len(phases) == 0 || phases[len(phases)-1] != pr.Phase {
			phases = append(phases, pr.Phase)
		}
	}
	return &phases
}

// TestRecoveryPicksMostAdvanced: replicas at different positions; the
// newest last term wins over a higher lsn, and the others are brought up
// to it.
func TestRecoveryPicksMostAdvanced(t *testing.T) {
	c := makeCluster(t, 3)
	c.putOneFile(0, 2, 20, "older-term-longer-log")
	c.putOneFile(1, 3, 11, "newest-term")
	c.putOneFile(2, 2, 5, "behind")

	cfg := c.primaryConfig(vol)
	phases := recordPhases(&cfg)
	p, m := c.openPrimary(cfg)
	if p.Term() != 5 {
		t.Fatalf("term %d, want 5 (highest seen 4 + 1)", p.Term())
	}
	snap := mustSnap(m)
	if snap.LSN != 11 {
		t.Fatalf("recovered lsn %d, want 11", snap.LSN)
	}
	if _, ok := find(snap, "newest-term"); !ok {
		t.Fatal("recovered the wrong replica")
	}
	for i := range c.reps {
		st := c.status(i, vol)
		if st.Lsn != 11 || st.LastTerm != 3 || st.AcceptedTerm != 5 {
			t.Fatalf("replica %d after recovery: %v", i, st)
		}
		sameState(t, c, i, m)
	}
	if want := []string{"acquire", "fetch", "install", "done"}; !reflect.DeepEqual(*phases, want) {
		t.Fatalf("progress phases %v, want %v", *phases, want)
	}
	_, lsn := m.writeFile(RootIno, "next", []byte("x"))
	mustWait(t, p, lsn, 10*time.Second)
	c.waitForLSN(vol, lsn)
}

// TestRecoveryInstallsOnlyUntilW: when W granting replicas hold the best
// position already, recovery installs nothing (a whole-volume install on a
// replica a few records behind cost 17 s of a 1,000,000-file recovery);
// the replica behind is no holder and catches up over its link once the
// primary serves, and a record then reaches it too.
func TestRecoveryInstallsOnlyUntilW(t *testing.T) {
	c := makeCluster(t, 3)
	c.putOneFile(0, 3, 11, "best")
	c.putOneFile(1, 3, 11, "best")
	c.putOneFile(2, 3, 9, "behind")

	cfg := c.primaryConfig(vol)
	phases := recordPhases(&cfg)
	p, m := c.openPrimary(cfg)
	if want := []string{"acquire", "fetch", "done"}; !reflect.DeepEqual(*phases, want) {
		t.Fatalf("progress phases %v, want %v (no install: W replicas held the base)", *phases, want)
	}
	if _, ok := find(mustSnap(m), "best"); !ok {
		t.Fatal("recovered the wrong replica")
	}
	_, lsn := m.writeFile(RootIno, "next", []byte("x"))
	mustWait(t, p, lsn, 10*time.Second)
	c.waitForLSN(vol, lsn) // the replica behind too: its link resynced it
	for i := range c.reps {
		sameState(t, c, i, m)
	}
}

// TestPrimaryCrashRecovery: a new primary after the first one vanished
// recovers everything that was acknowledged, inode numbers included.
func TestPrimaryCrashRecovery(t *testing.T) {
	c := makeCluster(t, 3)
	cfg := c.primaryConfig(vol)
	a, ma := c.openPrimary(cfg)
	ino, lsn := ma.writeFile(RootIno, "msg", []byte("acknowledged"))
	mustWait(t, a, lsn, 10*time.Second)
	_ = a.Close() // the process dies: nothing more is sent

	b, mb := c.openPrimary(cfg)
	in, ok := find(mustSnap(mb), "msg")
	if !ok || in.Ino != ino || string(in.Data) != "acknowledged" {
		t.Fatalf("recovered %+v", in)
	}
	_, lsn2 := mb.writeFile(RootIno, "msg2", []byte("more"))
	if lsn2 != lsn+2 {
		t.Fatalf("lsn %d continues from %d", lsn2, lsn)
	}
	mustWait(t, b, lsn2, 10*time.Second)
}

func TestAcquireFailsWithoutQuorum(t *testing.T) {
	c := makeCluster(t, 3)
	c.kill(0)
	c.kill(1)
	cfg := c.primaryConfig(vol)
	cfg.AcquireTimeout = 500 * time.Millisecond
	_, _, err := OpenPrimary(context.Background(), cfg)
	if !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("open with one replica: %v", err)
	}
	t.Log(err)
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []PrimaryConfig{
		{Volume: "v"},
		{Volume: "bad/name", Replicas: []string{"a:1"}},
		{Volume: "v", Replicas: []string{"a:1", "a:1"}},
		{Volume: "v", Replicas: []string{"a:1", "b:1", "c:1"}, W: 1},
		{Volume: "v", Replicas: []string{"a:1", "b:1", "c:1"}, W: 4},
	} {
		if _, _, err := OpenPrimary(context.Background(), cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// TestShipDelay: records nobody waits for stay in the log for ShipDelay;
// a Wait sends them at once to the W replicas that acknowledge fastest,
// and the trailing replica gets them when the ShipDelay timer fires.
func TestShipDelay(t *testing.T) {
	c := makeCluster(t, 3)
	cfg := c.primaryConfig(vol)
	cfg.ShipDelay, cfg.HedgeDelay = time.Hour, time.Hour
	p, m := c.openPrimary(cfg)
	waitConnected(t, p)
	before := p.Durable()
	pokes := linkPokes(p)
	q := m.mkdir(RootIno, "queue")
	_, last := m.writeFile(q, "msg-D", []byte("body"))
	// Counters, not a look after a sleep: Append decides whom to wake
	// before it returns, so a link woken now would be counted already,
	// however late its send would land.
	if now := linkPokes(p); !slices.Equal(now, pokes) {
		t.Fatalf("links woken %v times by appends alone (before %v): records shipped before ShipDelay or a Wait", now, pokes)
	}
	if d := p.Durable(); d != before {
		t.Fatalf("durable %d: records were shipped before ShipDelay or a Wait", d)
	}
	mustWait(t, p, last, 10*time.Second)
	if n := c.replicasAt(vol, last); n < cfg.W {
		t.Fatalf("%d replicas hold lsn %d after the Wait, want the quorum (%d)", n, last, cfg.W)
	}
	// The trailing replica's link was never woken, up to the Drain below
	// (the next thing that may wake it): nothing was sent to it.
	trailing := trailingLinks(p)
	if len(trailing) != len(c.reps)-cfg.W {
		t.Fatalf("links outside the quorum %v, want %d", trailing, len(c.reps)-cfg.W)
	}
	now := linkPokes(p)
	for _, i := range trailing {
		if now[i] != pokes[i] {
			t.Fatalf("trailing link %d woken %d times before the Drain: records sent outside ShipDelay", i, now[i]-pokes[i])
		}
	}
	if n := c.replicasAt(vol, last); n != cfg.W {
		t.Fatalf("%d replicas hold lsn %d after the Wait, want the quorum alone (%d)", n, last, cfg.W)
	}
	// A clean stop brings the trailing replica to the head without the timer.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if n := c.replicasAt(vol, last); n != len(c.reps) {
		t.Fatalf("%d replicas hold lsn %d after Drain, want all %d", n, last, len(c.reps))
	}
}

// TestHedge: when a replica of the quorum stalls, a Wait sends to the
// trailing replica after the hedge delay and completes with it.
func TestHedge(t *testing.T) {
	c := makeCluster(t, 3)
	cfg := c.primaryConfig(vol)
	cfg.ShipDelay, cfg.HedgeDelay = time.Hour, 20*time.Millisecond
	p, m := c.openPrimary(cfg)
	waitConnected(t, p)
	_, lsn := m.writeFile(RootIno, "warm", []byte("x"))
	mustWait(t, p, lsn, 10*time.Second)
	// Stall one replica of the quorum the next Wait will pick.
	p.mu.Lock()
	var stalled int
	for i, l := range p.links {
		if l == p.quorum[0] {
			stalled = i
		}
	}
	p.mu.Unlock()
	release := make(chan struct{})
	hook := func() { <-release }
	c.server(stalled).hookBeforeApply.Store(&hook) // atomic: the applier of a live stream reads it
	defer close(release)
	_, last := m.writeFile(RootIno, "msg", []byte("body"))
	mustWait(t, p, last, 10*time.Second)
	for i := range c.reps {
		if got := c.status(i, vol).Lsn; (i == stalled) != (got < last) {
			t.Errorf("replica %d (stalled %v) at lsn %d, want %d only on the others", i, i == stalled, got, last)
		}
	}
}

func waitConnected(t *testing.T, p *Primary) {
	t.Helper()
	// Wait until every link has its stream: a session that starts sends
	// what the log holds, which is right, but not what these tests are about.
	testsupport.WaitFor(t, 10*time.Second, "links connected", func() bool { return allConnected(p.Status()) })
}

// linkPokes counts, per link, the times it was told to send.
func linkPokes(p *Primary) []uint64 {
	n := make([]uint64, len(p.links))
	for i, l := range p.links {
		n[i] = l.pokes.Load()
	}
	return n
}

// trailingLinks are the indexes of the links outside the quorum set.
func trailingLinks(p *Primary) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []int
	for i, l := range p.links {
		if !slices.Contains(p.quorum, l) {
			out = append(out, i)
		}
	}
	return out
}

// replicasAt counts the replicas holding lsn.
func (c *testCluster) replicasAt(vol string, lsn uint64) int {
	n := 0
	for i := range c.reps {
		if c.status(i, vol).Lsn >= lsn {
			n++
		}
	}
	return n
}

func allConnected(st PrimaryStatus) bool {
	for _, r := range st.Replicas {
		if !r.Connected {
			return false
		}
	}
	return len(st.Replicas) > 0
}

// TestQuorumHolds: the quorum set stays unless a member is down, stalled
// (a send waiting far longer than its average) or far slower on average
// than a replica outside it.
func TestQuorumHolds(t *testing.T) {
	now := time.Now()
	mk := func(ewma time.Duration, connected bool, oldest time.Duration) *link {
		l := &link{connected: connected, ackEWMA: ewma}
		if oldest > 0 {
			l.sent = []sentMark{{lsn: 1, at: now.Add(-oldest)}}
		}
		return l
	}
	for _, tc := range []struct {
		name    string
		a, b, c *link // a and b form the quorum, c trails
		holds   bool
	}{
		{"steady", mk(time.Millisecond, true, 30*time.Millisecond), mk(time.Millisecond, true, 0), mk(300*time.Microsecond, true, 0), true},
		{"member down", mk(time.Millisecond, false, 0), mk(time.Millisecond, true, 0), mk(time.Millisecond, true, 0), false},
		{"member stalled", mk(time.Millisecond, true, 200*time.Millisecond), mk(time.Millisecond, true, 0), mk(time.Millisecond, true, 0), false},
		{"member far slower", mk(9*time.Millisecond, true, 0), mk(time.Millisecond, true, 0), mk(time.Millisecond, true, 0), false},
		{"trailing one down", mk(time.Millisecond, true, 0), mk(time.Millisecond, true, 0), mk(0, false, 0), true},
	} {
		p := &Primary{cfg: PrimaryConfig{W: 2}, links: []*link{tc.a, tc.b, tc.c}, quorum: []*link{tc.a, tc.b}}
		if got := p.quorumHolds(now); got != tc.holds {
			t.Errorf("%s: quorumHolds = %v, want %v", tc.name, got, tc.holds)
		}
	}
}

// waitDurable polls until lsn is durable (a Wait would fail at once while
// the quorum is known lost).
func waitDurable(t *testing.T, p *Primary, lsn uint64, within time.Duration) {
	t.Helper()
	testsupport.WaitForErr(t, within, fmt.Sprintf("lsn %d durable", lsn), func() error {
		if d := p.Durable(); d < lsn {
			return fmt.Errorf("durable %d", d)
		}
		return nil
	})
}
