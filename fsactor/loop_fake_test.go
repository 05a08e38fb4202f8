package fsactor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jacobsa/fuse/fuseops"
	"go.uber.org/zap/zaptest"
)

// fakeMachine stands for State in tests of the loop alone: flushes wait for
// flushLSN, unlinks produce a NoteDelete, mkdir answers EROFS once
// read-only, lookups ENOENT, rmdir a wrapped ENOMEM, everything else
// succeeds.
type fakeMachine struct {
	flushLSN uint64
	// hold, when not nil, holds a mkdir of "hold" in Handle until it is
	// closed (a step stuck on the actor, for the watchdog).
	hold chan struct{}
	// effects, when not nil, adds to the Effects of every op (set before
	// the loop runs).
	effects func(op any, e *Effects)

	// Written on the actor, read by the test after a reply (the reply
	// orders them).
	mu       sync.Mutex
	callers  map[opKind]Caller
	readOnly int // SetReadOnly calls
	closed   bool

	eff Effects // actor-owned, as State's
}

func newFakeMachine() *fakeMachine { return &fakeMachine{callers: map[opKind]Caller{}} }

func (m *fakeMachine) handleKind(k opKind, op any, c Caller, now time.Time) *Effects {
	if o, ok := op.(*fuseops.MkDirOp); ok && o.Name == "hold" && m.hold != nil {
		<-m.hold
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.callers[k] = c
	switch o := op.(type) {
	case *fuseops.FlushFileOp:
		m.eff.WaitLSN = m.flushLSN
	case *fuseops.UnlinkOp:
		m.eff.Notes = append(m.eff.Notes, Note{Kind: NoteDelete, Parent: uint64(o.Parent), Child: 99, Name: o.Name})
	case *fuseops.MkDirOp:
		if m.readOnly > 0 {
			m.eff.Err = syscall.EROFS
		}
	case *fuseops.LookUpInodeOp:
		m.eff.Err = syscall.ENOENT
	case *fuseops.RmDirOp:
		m.eff.Err = syscall.ENOMEM // a memfd's errno, before the reply's mapping
	case *fuseops.GetInodeAttributesOp:
		o.Attributes.Nlink = 1
	}
	if m.effects != nil {
		m.effects(op, &m.eff)
	}
	return &m.eff
}

// Effects is touched by the actor alone (the loop applies and resets it).
func (m *fakeMachine) Effects() *Effects { return &m.eff }

func (m *fakeMachine) RemoveName(parent uint64, name string, now time.Time) error {
	m.eff.Notes = append(m.eff.Notes, Note{Kind: NoteDelete, Parent: parent, Child: 98, Name: name})
	return nil
}

func (m *fakeMachine) SetReadOnly() {
	m.mu.Lock()
	m.readOnly++
	m.mu.Unlock()
}

func (m *fakeMachine) Snapshot() (*Snapshot, error) { return &Snapshot{LSN: 7}, nil }

func (m *fakeMachine) Close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
}

func (m *fakeMachine) caller(k opKind) Caller {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.callers[k]
}

// TestLoopCallerGid: the caller's uid and pid come from the OpContext of
// every op; the gid is looked up only for ops that create inodes.
func TestLoopCallerGid(t *testing.T) {
	m := newFakeMachine()
	_, fc := startLoop(t, Config{}, m, &DiscardSink{})
	oc := fuseops.OpContext{FuseID: 1, Uid: 1000, Pid: 77}
	fc.do(t, &fuseops.GetInodeAttributesOp{Inode: 1, OpContext: oc})
	fc.do(t, &fuseops.MkDirOp{Parent: 1, Name: "d", OpContext: oc})
	fc.do(t, &fuseops.CreateFileOp{Parent: 1, Name: "f", OpContext: oc})
	if c := m.caller(kindGetAttr); c != (Caller{Uid: 1000, Pid: 77}) {
		t.Errorf("getattr caller %+v: want uid and pid, no gid", c)
	}
	for _, k := range []opKind{kindMkDir, kindCreate} {
		if c := m.caller(k); c != (Caller{Uid: 1000, Gid: testGid, Pid: 77}) {
			t.Errorf("%s caller %+v: want uid, gid %d and pid", k, c, testGid)
		}
	}
}

// TestLoopEOFWaitsForTasks: after EOF, ServeOps returns only once the held
// FLUSH has been answered; then the state is closed.
func TestLoopEOFWaitsForTasks(t *testing.T) {
	m := newFakeMachine()
	m.flushLSN = 5
	sink := newBlockSink()
	s := mustServer(t, Config{Log: zaptest.NewLogger(t)}.withDefaults(), m, sink)
	fc := newFakeConn(t)
	go s.loop.run(fc)

	flush := fc.send(t, &fuseops.FlushFileOp{Inode: 2})
	if lsn := sink.awaitWait(t); lsn != 5 {
		t.Fatalf("task waits for lsn %d, want 5", lsn)
	}
	fc.hangUp()
	select {
	case <-s.loop.eofSeen:
	case <-time.After(deadline):
		t.Fatal("EOF not seen by the actor")
	}
	select {
	case <-s.Done():
		t.Fatal("ServeOps returned with a FLUSH unanswered")
	default:
	}
	sink.releaseWith(nil)
	if err := fc.reply(t, flush); err != nil {
		t.Fatalf("flush: %v", err)
	}
	select {
	case <-s.Done():
	case <-time.After(deadline):
		t.Fatal("ServeOps did not return after the last task")
	}
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if !closed {
		t.Fatal("state not closed after ServeOps")
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := s.RemoveName(ctx, 1, "x"); !errors.Is(err, ErrStopped) {
		t.Fatalf("RemoveName after stop: %v, want ErrStopped", err)
	}
}

// TestLoopDurableRepliesAtOnce: a waitLSN the sink already has is answered
// by the actor itself, without a task.
func TestLoopDurableRepliesAtOnce(t *testing.T) {
	m := newFakeMachine()
	m.flushLSN = 3
	sink := newBlockSink()
	sink.durable = 3
	_, fc := startLoop(t, Config{}, m, sink)
	if err := fc.do(t, &fuseops.FlushFileOp{Inode: 2}); err != nil {
		t.Fatalf("flush: %v", err)
	}
	select {
	case lsn := <-sink.waiting:
		t.Fatalf("a task waited for lsn %d, already durable", lsn)
	default:
	}
}

// TestLoopFencedOnce: two fenced flushes answer EIO, SetReadOnly runs once,
// and a mkdir sent after the first EIO answers EROFS.
func TestLoopFencedOnce(t *testing.T) {
	m := newFakeMachine()
	m.flushLSN = 1
	sink := newBlockSink()
	sink.releaseWith(fmt.Errorf("term 9: %w", ErrFenced))
	s, fc := startLoop(t, Config{}, m, sink)
	for range 2 {
		if err := fc.do(t, &fuseops.FlushFileOp{Inode: 2}); !errors.Is(err, syscall.EIO) {
			t.Fatalf("fenced flush: %v, want EIO", err)
		}
		if err := fc.do(t, &fuseops.MkDirOp{Parent: 1, Name: "d"}); !errors.Is(err, syscall.EROFS) {
			t.Fatalf("mkdir after fenced flush: %v, want EROFS", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := s.SetReadOnly(ctx, "operator"); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	n := m.readOnly
	m.mu.Unlock()
	if n != 1 {
		t.Fatalf("SetReadOnly called %d times, want 1", n)
	}
}

// TestLoopInterruptedWait: a waiting FSYNC whose request the kernel
// interrupts (its ctx is cancelled) keeps waiting: its change is applied,
// so it answers the true outcome (nil once durable), never EINTR.
func TestLoopInterruptedWait(t *testing.T) {
	m := newFakeMachine()
	m.flushLSN = 4
	sink := newBlockSink()
	_, fc := startLoop(t, Config{}, m, sink)
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), reqIDKey{}, 1000))
	fc.post(ctx, &fuseops.FlushFileOp{Inode: 2})
	sink.awaitWait(t)
	cancel()
	// Cancelling reaches every context derived from the request's before
	// cancel returns: a Wait given one would already see it.
	if err := sink.lastWaitCtx().Err(); err != nil {
		t.Fatalf("the interrupt reached the task's Wait (%v): it could end before durable", err)
	}
	fc.mark("durable")
	sink.releaseWith(nil)
	if err := fc.reply(t, 1000); err != nil {
		t.Fatalf("interrupted wait, then durable: %v, want nil", err)
	}
	// An ordering, not a look after a sleep: a reply before the sink said
	// durable fails here however late the test would have looked.
	if !fc.before("durable", "reply 1000") {
		t.Fatalf("interrupted wait answered before the sink said durable: %q", fc.stepList())
	}
}

// TestLoopNotesAfterReply: a step's notes reach the device after its reply.
func TestLoopNotesAfterReply(t *testing.T) {
	m := newFakeMachine()
	s := mustServer(t, Config{Log: zaptest.NewLogger(t)}.withDefaults(), m, &DiscardSink{})
	fc := newFakeConn(t)
	var order []string
	var mu sync.Mutex
	dev := newFakeDev(func(b []byte) error {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, fmt.Sprintf("note replied=%v", fc.replied(1)))
		return nil
	})
	s.loop.notify = newNotifyPool(dev, 1, 16, zaptest.NewLogger(t))
	go s.loop.run(fc)
	defer func() { fc.hangUp(); <-s.Done() }()
	if err := fc.do(t, &fuseops.UnlinkOp{Parent: 1, Name: "m"}); err != nil {
		t.Fatal(err)
	}
	dev.await(t, encodeNote(nil, Note{Kind: NoteDelete, Parent: 1, Child: 99, Name: "m"}))
	mu.Lock()
	defer mu.Unlock()
	if len(order) != 1 || order[0] != "note replied=true" {
		t.Fatalf("notes written %q: want one, after the reply", order)
	}
}

// TestLoopStats: OpCounts counts every answered op by kind, ErrnoCounts
// the errors.
func TestLoopStats(t *testing.T) {
	s, fc := startLoop(t, Config{}, newFakeMachine(), &DiscardSink{})
	for range 3 {
		fc.do(t, &fuseops.GetInodeAttributesOp{Inode: 1})
	}
	fc.do(t, &fuseops.LookUpInodeOp{Parent: 1, Name: "nope"})
	fc.do(t, &fuseops.StatFSOp{})
	got := s.OpCounts()
	if got["getattr"] != 3 || got["lookup"] != 1 || got["statfs"] != 1 || len(got) != 3 {
		t.Fatalf("OpCounts %v", got)
	}
	if e := s.ErrnoCounts(); e["lookup/ENOENT"] != 1 || len(e) != 1 {
		t.Fatalf("ErrnoCounts %v", e)
	}
}

// TestLoopSnapshotAndDo: internal events run on the actor and return their
// results.
func TestLoopSnapshotAndDo(t *testing.T) {
	s, _ := startLoop(t, Config{}, newFakeMachine(), &DiscardSink{})
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	snap, err := s.Snapshot(ctx)
	if err != nil || snap.LSN != 7 {
		t.Fatalf("Snapshot: %+v, %v", snap, err)
	}
}

// errConn plays a script of ReadOp results: an error, or nil for "the next
// op of fakeConn"; after the script, fakeConn alone. A scripted error takes
// one count off the device, as the read that failed took its request: the
// test makes the device readable once for each (fakeConn.kick).
type errConn struct {
	*fakeConn
	mu     sync.Mutex
	script []error
}

func (c *errConn) ReadOp() (context.Context, any, error) {
	c.mu.Lock()
	var err error
	if len(c.script) > 0 {
		err, c.script = c.script[0], c.script[1:]
	}
	c.mu.Unlock()
	if err != nil {
		if terr := c.take(); terr != nil {
			return nil, nil, terr
		}
		return nil, nil, err
	}
	return c.fakeConn.ReadOp()
}

// TestLoopReadErrors: a request jacobsa cannot decode is skipped and the
// loop goes on; a failing device ends serving like EOF.
func TestLoopReadErrors(t *testing.T) {
	s := mustServer(t, Config{Log: zaptest.NewLogger(t)}.withDefaults(), newFakeMachine(), &DiscardSink{})
	fc := newFakeConn(t)
	go s.loop.run(&errConn{fakeConn: fc, script: []error{
		errors.New("convertInMessage: short message"),
		nil,
		&os.PathError{Op: "read", Path: "/dev/fuse", Err: syscall.EBADF},
	}})
	fc.kick() // the undecodable request
	if err := fc.do(t, &fuseops.GetInodeAttributesOp{Inode: 1}); err != nil {
		t.Fatalf("getattr after a skipped request: %v", err)
	}
	fc.kick() // the read that fails
	select {
	case <-s.Done():
	case <-time.After(deadline):
		t.Fatal("a failing device did not end ServeOps")
	}
}

// TestLoopReplyErrno: the loop replies with the errno errnoOf maps an
// error to, bare (jacobsa/fuse answers EIO for anything else), and counts
// that same errno: an ENOMEM reaches the kernel as ENOSPC and is
// counted as ENOSPC (it was counted as ENOMEM and answered EIO).
func TestLoopReplyErrno(t *testing.T) {
	m := newFakeMachine()
	s, fc := startLoop(t, Config{}, m, &DiscardSink{})
	err := fc.do(t, &fuseops.RmDirOp{Parent: 1, Name: "d"})
	if e, ok := err.(syscall.Errno); !ok || e != syscall.ENOSPC {
		t.Fatalf("rmdir replied %#v, want the bare errno ENOSPC", err)
	}
	if err := fc.do(t, &fuseops.LookUpInodeOp{Parent: 1, Name: "x"}); err != syscall.ENOENT {
		t.Fatalf("lookup replied %#v, want ENOENT", err)
	}
	got := s.loop.stats.errnoCounts()
	want := map[string]uint64{"rmdir/ENOSPC": 1, "lookup/ENOENT": 1}
	if len(got) != len(want) || got["rmdir/ENOSPC"] != 1 || got["lookup/ENOENT"] != 1 {
		t.Fatalf("errno counts %v, want %v", got, want)
	}
}
