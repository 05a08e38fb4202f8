package fsactor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jacobsa/fuse/fuseops"
	"github.com/jacobsa/fuse/fuseutil"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"
)

// deadline bounds every wait in these tests: long enough for a loaded CI
// machine, short enough to fail fast when something hangs.
const deadline = 10 * time.Second

// fakeConn is a fake kernel with a device the actor polls, so the loop
// tests run the one loop a mount runs (serveInline, waker). A request is an
// entry in queue plus one count on an eventfd in semaphore mode: the
// descriptor is readable while a request waits. ReadOp takes one count
// (EAGAIN when there is none, as from the non-blocking /dev/fuse) and the
// oldest request; the count of hangUp finds the queue empty: io.EOF.
// Replies come out in the order the loop writes them.
type fakeConn struct {
	efd        int                    // eventfd, EFD_SEMAPHORE|EFD_NONBLOCK: the device
	beforeRead atomic.Pointer[func()] // run once by the next ReadOp, before its read

	qmu   sync.Mutex
	queue []fakeReq // requests posted and not read yet, oldest first

	mu      sync.Mutex
	replies map[int]error
	arrived chan int // ids of replied ops
	nextID  int
	steps   []string // "reply N" for each reply and the test's marks, in order
}

type fakeReq struct {
	ctx context.Context
	op  any
}

type reqIDKey struct{}

// newFakeConn makes a fake kernel; its device is closed when the test
// ends, after the cleanups registered later (the server's) have run.
func newFakeConn(t testing.TB) *fakeConn {
	t.Helper()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK|unix.EFD_SEMAPHORE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(efd) })
	return &fakeConn{efd: efd, replies: map[int]error{}, arrived: make(chan int, 1024)}
}

func (f *fakeConn) Fd() int { return f.efd }

func (f *fakeConn) ReadOp() (context.Context, any, error) {
	if fn := f.beforeRead.Swap(nil); fn != nil {
		(*fn)()
	}
	if err := f.take(); err != nil {
		return nil, nil, err
	}
	r, ok := f.pop()
	if !ok {
		return nil, nil, io.EOF
	}
	return r.ctx, r.op, nil
}

// take reads one count off the device, as a read(2) of /dev/fuse takes one
// request: an *os.PathError wrapping EAGAIN when none waits.
func (f *fakeConn) take() error {
	var b [8]byte
	if _, err := unix.Read(f.efd, b[:]); err != nil {
		return &os.PathError{Op: "read", Path: "fake /dev/fuse", Err: err}
	}
	return nil
}

// pop takes the oldest request; false when none is queued (hung up).
func (f *fakeConn) pop() (fakeReq, bool) {
	f.qmu.Lock()
	defer f.qmu.Unlock()
	if len(f.queue) == 0 {
		return fakeReq{}, false
	}
	r := f.queue[0]
	f.queue = f.queue[1:]
	return r, true
}

// kick makes the device readable once more, as a request or the hang-up
// does: after the entry is queued, so a count always finds its request.
func (f *fakeConn) kick() {
	if _, err := unix.Write(f.efd, eventOne[:]); err != nil {
		panic(fmt.Sprintf("fake device: %v", err)) // only a counter overflow
	}
}

// post queues op with ctx as a request of the kernel.
func (f *fakeConn) post(ctx context.Context, op any) {
	f.qmu.Lock()
	f.queue = append(f.queue, fakeReq{ctx, op})
	f.qmu.Unlock()
	f.kick()
}

// hangUp ends the connection as an unmount does: once the requests queued
// before it are read, ReadOp answers io.EOF.
func (f *fakeConn) hangUp() { f.kick() }

func (f *fakeConn) Reply(ctx context.Context, err error) error {
	id := ctx.Value(reqIDKey{}).(int)
	f.mu.Lock()
	if _, dup := f.replies[id]; dup {
		panic(fmt.Sprintf("op %d answered twice", id))
	}
	f.replies[id] = err
	f.steps = append(f.steps, fmt.Sprintf("reply %d", id))
	f.mu.Unlock()
	f.arrived <- id
	return nil
}

// send hands op to the loop (as the kernel would) and returns its id.
func (f *fakeConn) send(t *testing.T, op any) int {
	t.Helper()
	f.mu.Lock()
	f.nextID++
	id := f.nextID
	f.mu.Unlock()
	f.post(context.WithValue(context.Background(), reqIDKey{}, id), op)
	return id
}

// reply waits for op id's reply.
func (f *fakeConn) reply(t *testing.T, id int) error {
	t.Helper()
	timeout := time.After(deadline)
	for {
		f.mu.Lock()
		err, ok := f.replies[id]
		f.mu.Unlock()
		if ok {
			return err
		}
		select {
		case <-f.arrived:
		case <-timeout:
			t.Fatalf("op %d not answered within %v", id, deadline)
		}
	}
}

// mark records a step of the test among the replies: an ordering the test
// asserts on afterwards (before reports whether one step came before
// another), which fails whenever a reply comes too early, unlike a look
// after a fixed sleep.
func (f *fakeConn) mark(step string) {
	f.mu.Lock()
	f.steps = append(f.steps, step)
	f.mu.Unlock()
}

// before says whether step a was recorded, and before step b (if b was).
func (f *fakeConn) before(a, b string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, j := slices.Index(f.steps, a), slices.Index(f.steps, b)
	return i >= 0 && (j < 0 || i < j)
}

// stepList returns the steps recorded so far.
func (f *fakeConn) stepList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.steps)
}

// replied says whether op id has been answered yet.
func (f *fakeConn) replied(id int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.replies[id]
	return ok
}

// do sends op and waits for its reply.
func (f *fakeConn) do(t *testing.T, op any) error {
	t.Helper()
	return f.reply(t, f.send(t, op))
}

// blockSink is a Sink whose Wait blocks until the test releases it. A
// disarmed one makes everything durable at once (set-up of mount tests).
type blockSink struct {
	mu       sync.Mutex
	head     uint64
	durable  uint64
	disarmed bool
	release  chan struct{} // closed: every Wait returns result
	result   error
	waiting  chan uint64     // the lsn of each Wait that starts
	waitCtx  context.Context // the context of the last Wait that started
}

func newBlockSink() *blockSink {
	return &blockSink{release: make(chan struct{}), waiting: make(chan uint64, 64)}
}

func (s *blockSink) Append(r *Record) {
	if r.Content != nil {
		r.Content.Release() // nothing reads the content here
	}
	s.mu.Lock()
	s.head = r.LSN
	if s.disarmed {
		s.durable = r.LSN
	}
	s.mu.Unlock()
}

func (s *blockSink) Durable() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.durable
}

// arm makes records appended from now on wait for the release.
func (s *blockSink) arm() {
	s.mu.Lock()
	s.disarmed = false
	s.mu.Unlock()
}

func (s *blockSink) Wait(ctx context.Context, lsn uint64) error {
	s.mu.Lock()
	if lsn <= s.durable {
		s.mu.Unlock()
		return nil
	}
	s.waitCtx = ctx
	s.mu.Unlock()
	s.waiting <- lsn
	select {
	case <-s.release:
		if s.result == nil {
			s.mu.Lock()
			s.durable = max(s.durable, lsn)
			s.mu.Unlock()
		}
		return s.result
	case <-ctx.Done():
		return fmt.Errorf("blockSink: lsn %d: %w (%w)", lsn, ErrNotDurable, ctx.Err())
	}
}

// releaseWith makes every pending and future Wait return err.
func (s *blockSink) releaseWith(err error) {
	s.result = err
	close(s.release)
}

// lastWaitCtx is the context the last Wait that started was given.
func (s *blockSink) lastWaitCtx() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waitCtx
}

// awaitWait waits until a task is blocked in Wait and returns its lsn.
func (s *blockSink) awaitWait(t *testing.T) uint64 {
	t.Helper()
	select {
	case lsn := <-s.waiting:
		return lsn
	case <-time.After(deadline):
		t.Fatal("no task waits on the sink")
		return 0
	}
}

// testGid is the gid the loop tests' fake gid source reports.
const testGid = 4242

// startLoop serves a Server built on st with a fake connection until the
// test ends.
func startLoop(t *testing.T, cfg Config, st machine, sink Sink) (*Server, *fakeConn) {
	t.Helper()
	if cfg.Log == nil {
		cfg.Log = zaptest.NewLogger(t)
	}
	s := mustServer(t, cfg.withDefaults(), st, sink)
	s.loop.gidOf = func(context.Context, *fuseops.OpContext) uint32 { return testGid }
	fc := newFakeConn(t)
	go s.loop.run(fc)
	t.Cleanup(func() {
		fc.hangUp()
		select {
		case <-s.Done():
		case <-time.After(deadline):
			t.Errorf("ServeOps did not return after EOF")
		}
	})
	return s, fc
}

// mustServer is newServer for tests: a failure ends the test.
func mustServer(t testing.TB, cfg Config, st machine, sink Sink) *Server {
	t.Helper()
	s, err := newServer(cfg, st, sink)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startState serves a real State.
func startState(t *testing.T, cfg Config, sink Sink) (*Server, *fakeConn) {
	t.Helper()
	cfg = cfg.withDefaults()
	st, err := NewState(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return startLoop(t, cfg, st, sink)
}

// createFile creates parent/name through the loop and returns its inode and
// handle.
func createFile(t *testing.T, fc *fakeConn, parent fuseops.InodeID, name string) (fuseops.InodeID, fuseops.HandleID) {
	t.Helper()
	op := &fuseops.CreateFileOp{Parent: parent, Name: name, Mode: 0o644}
	if err := fc.do(t, op); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return op.Entry.Child, op.Handle
}

func writeFile(t *testing.T, fc *fakeConn, ino fuseops.InodeID, h fuseops.HandleID, data string) {
	t.Helper()
	if err := fc.do(t, &fuseops.WriteFileOp{Inode: ino, Handle: h, Data: []byte(data)}); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// readDirNames lists a directory through opendir/readdir/releasedir.
func readDirNames(t *testing.T, fc *fakeConn, dir fuseops.InodeID) []string {
	t.Helper()
	od := &fuseops.OpenDirOp{Inode: dir}
	if err := fc.do(t, od); err != nil {
		t.Fatalf("opendir: %v", err)
	}
	rd := &fuseops.ReadDirOp{Inode: dir, Handle: od.Handle, Dst: make([]byte, 64<<10)}
	if err := fc.do(t, rd); err != nil {
		t.Fatalf("readdir: %v", err)
	}
	if err := fc.do(t, &fuseops.ReleaseDirHandleOp{Handle: od.Handle}); err != nil {
		t.Fatalf("releasedir: %v", err)
	}
	return direntNames(rd.Dst[:rd.BytesRead])
}

// direntNames decodes fuse_dirent records (fuseutil.WriteDirent's format).
func direntNames(b []byte) []string {
	var names []string
	for len(b) >= 24 {
		namelen := int(uint32(b[16]) | uint32(b[17])<<8 | uint32(b[18])<<16 | uint32(b[19])<<24)
		names = append(names, string(b[24:24+namelen]))
		size := (24 + namelen + 7) &^ 7
		if size > len(b) {
			break
		}
		b = b[size:]
	}
	return names
}

var _ = fuseutil.WriteDirent // the format direntNames decodes

// TestFlushHeldDoesNotBlockOthers: a FLUSH waiting for the sink leaves the
// actor free: getattr and readdir of other files are answered meanwhile;
// the FLUSH is answered once the sink says durable.
func TestFlushHeldDoesNotBlockOthers(t *testing.T) {
	sink := newBlockSink()
	_, fc := startState(t, Config{}, sink)
	a, ha := createFile(t, fc, fuseops.RootInodeID, "a")
	b, _ := createFile(t, fc, fuseops.RootInodeID, "b")
	writeFile(t, fc, a, ha, "queued message")

	flush := fc.send(t, &fuseops.FlushFileOp{Inode: a, Handle: ha})
	lsn := sink.awaitWait(t)
	if lsn == 0 {
		t.Fatal("flush waits for lsn 0")
	}

	ga := &fuseops.GetInodeAttributesOp{Inode: b}
	if err := fc.do(t, ga); err != nil {
		t.Fatalf("getattr b while a flush waits: %v", err)
	}
	names := readDirNames(t, fc, fuseops.RootInodeID)
	if !contains(names, "a") || !contains(names, "b") {
		t.Fatalf("readdir while a flush waits: %q", names)
	}
	if fc.replied(flush) {
		t.Fatal("flush answered before the sink said durable")
	}

	sink.releaseWith(nil)
	if err := fc.reply(t, flush); err != nil {
		t.Fatalf("flush after durable: %v", err)
	}
}

// TestFlushTimeoutEIO: a FLUSH the sink never acknowledges is answered EIO
// after FlushTimeout.
func TestFlushTimeoutEIO(t *testing.T) {
	sink := newBlockSink()
	_, fc := startState(t, Config{FlushTimeout: 50 * time.Millisecond}, sink)
	a, ha := createFile(t, fc, fuseops.RootInodeID, "a")
	writeFile(t, fc, a, ha, "x")
	start := time.Now()
	err := fc.do(t, &fuseops.FlushFileOp{Inode: a, Handle: ha})
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("flush never durable: got %v, want EIO", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("EIO after %v, before the flush timeout", d)
	}
}

// TestFencedTurnsReadOnly: ErrFenced from the sink answers the FLUSH with
// EIO and turns the volume read-only before that answer, so the next
// mutation the kernel sends answers EROFS.
func TestFencedTurnsReadOnly(t *testing.T) {
	sink := newBlockSink()
	_, fc := startState(t, Config{}, sink)
	a, ha := createFile(t, fc, fuseops.RootInodeID, "a")
	writeFile(t, fc, a, ha, "x")
	sink.releaseWith(fmt.Errorf("replica says term 7: %w", ErrFenced))
	if err := fc.do(t, &fuseops.FlushFileOp{Inode: a, Handle: ha}); !errors.Is(err, syscall.EIO) {
		t.Fatalf("fenced flush: got %v, want EIO", err)
	}
	err := fc.do(t, &fuseops.MkDirOp{Parent: fuseops.RootInodeID, Name: "d", Mode: 0o755})
	if !errors.Is(err, syscall.EROFS) {
		t.Fatalf("mkdir after fencing: got %v, want EROFS", err)
	}
	ga := &fuseops.GetInodeAttributesOp{Inode: a}
	if err := fc.do(t, ga); err != nil {
		t.Fatalf("getattr after fencing: %v", err)
	}
}

// TestUnknownOpENOSYS: an op the state does not know is answered ENOSYS.
func TestUnknownOpENOSYS(t *testing.T) {
	s, fc := startState(t, Config{}, &DiscardSink{})
	type someNewOp struct{ Inode fuseops.InodeID }
	if err := fc.do(t, &someNewOp{Inode: 1}); !errors.Is(err, syscall.ENOSYS) {
		t.Fatalf("unknown op: got %v, want ENOSYS", err)
	}
	if n := s.OpCounts()["unknown"]; n != 1 {
		t.Fatalf("OpCounts[unknown] = %d, want 1", n)
	}
}

// TestRemoveNameNotifies: Server.RemoveName removes the name on the actor
// and the notify pool writes FUSE_NOTIFY_DELETE for it.
func TestRemoveNameNotifies(t *testing.T) {
	dev := newFakeDev(nil)
	cfg := Config{}
	s, fc := startStateDev(t, cfg, dev)
	f, _ := createFile(t, fc, fuseops.RootInodeID, "gone")
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := s.RemoveName(ctx, uint64(fuseops.RootInodeID), "gone"); err != nil {
		t.Fatalf("RemoveName: %v", err)
	}
	lk := &fuseops.LookUpInodeOp{Parent: fuseops.RootInodeID, Name: "gone"}
	if err := fc.do(t, lk); err == nil && lk.Entry.Child != 0 {
		t.Fatalf("lookup after RemoveName finds inode %d", lk.Entry.Child)
	}
	want := encodeNote(nil, Note{Kind: NoteDelete, Parent: uint64(fuseops.RootInodeID), Child: uint64(f), Name: "gone"})
	dev.await(t, want)
	if err := s.RemoveName(ctx, uint64(fuseops.RootInodeID), "gone"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("second RemoveName: got %v, want ENOENT", err)
	}
}

// startStateDev serves a real State whose notify pool writes to dev.
func startStateDev(t *testing.T, cfg Config, dev *fakeDev) (*Server, *fakeConn) {
	t.Helper()
	cfg.Log = zaptest.NewLogger(t)
	cfg = cfg.withDefaults()
	sink := &DiscardSink{}
	cfg.DiscardContent = true // as NewServer with a DiscardSink
	st, err := NewState(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := mustServer(t, cfg, st, sink)
	s.loop.notify = newNotifyPool(dev, 2, 64, cfg.Log)
	s.loop.gidOf = func(context.Context, *fuseops.OpContext) uint32 { return testGid }
	fc := newFakeConn(t)
	go s.loop.run(fc)
	t.Cleanup(func() {
		fc.hangUp()
		<-s.Done()
	})
	return s, fc
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestDoRunsOnActor: Server.Do runs a function on the real State, in order
// with FUSE ops, and the notes it makes reach the notify pool.
func TestDoRunsOnActor(t *testing.T) {
	dev := newFakeDev(nil)
	s, fc := startStateDev(t, Config{}, dev)
	f, _ := createFile(t, fc, fuseops.RootInodeID, "remote")
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var rerr error
	if err := s.Do(ctx, func(st *State) {
		rerr = st.RemoveName(uint64(fuseops.RootInodeID), "remote", time.Now())
		st.CheckInvariants()
	}); err != nil || rerr != nil {
		t.Fatalf("Do: %v, RemoveName: %v", err, rerr)
	}
	dev.await(t, encodeNote(nil, Note{Kind: NoteDelete, Parent: uint64(fuseops.RootInodeID), Child: uint64(f), Name: "remote"}))
	if names := readDirNames(t, fc, fuseops.RootInodeID); contains(names, "remote") {
		t.Fatalf("readdir after Do removed it: %q", names)
	}
}
