package fsactor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/jacobsa/fuse"
	"go.uber.org/zap"
)

// Config says how one volume is served.
type Config struct {
	Volume string // volume name, for logs

	// EntryTimeout and AttrTimeout are how long the kernel may cache names
	// (positive and negative) and attributes. The primary is the only
	// writer of its volume, so they can be long; changes the kernel did not
	// make itself are pushed to it through notifications.
	EntryTimeout time.Duration
	AttrTimeout  time.Duration

	ReadOnly bool // every mutation answers EROFS
	// Follower: the volume follows a primary. Every FUSE mutation answers
	// EROFS (as ReadOnly); the state changes only through ApplyRecords and
	// Resync; no records are emitted and no reply waits (follow.go).
	// Promote ends it. A follower must be mounted without the kernel's
	// writeback cache (DisableWritebackCache, and the mount's
	// DisableWritebackCaching): with it the kernel keeps a regular file's
	// size, mtime and ctime itself and ignores the server's
	// (fs/fuse/inode.c, fuse_get_cache_mask), so a file grown or truncated
	// remotely would keep its old size on the follower. NewServer refuses
	// a follower with it.
	Follower bool
	// DisableWritebackCache mirrors fuse.MountConfig.DisableWritebackCaching:
	// whether the kernel caches writes decides how O_APPEND writes are placed
	// (State.SetWritebackCache).
	DisableWritebackCache bool
	Sync                  bool // every mutation waits until its record is durable

	// DiscardContent makes data records carry no content (attributes
	// only): for a sink that keeps nothing (--local), where copying a file
	// nobody keeps would cost a read of every byte at every close. The
	// state never looks at the sink: NewServer sets it when its sink is a
	// *DiscardSink; a caller of NewState says it itself.
	DiscardContent bool

	// Root directory owner and mode for a new (empty) volume.
	RootUid, RootGid uint32
	RootMode         uint32 // permission bits, e.g. 0o755

	// Capacity is the byte total statfs reports and writes are held to
	// (ENOSPC beyond it); MaxInodes likewise for inodes. 0 means: derive
	// from the machine (memory for bytes, one inode per 8 KiB of it).
	Capacity  uint64
	MaxInodes uint64

	// FlushTimeout bounds how long FLUSH, FSYNC, rename and link wait for
	// the sink before answering EIO. 0: DefaultFlushTimeout.
	FlushTimeout time.Duration

	// NotifyDev is the /dev/fuse file the volume is mounted with (opened
	// blocking; jacobsa reads a duplicate of it). Kernel notifications are
	// written to it by the notify pool, and the goroutine that reads the
	// device is the actor itself (one thread woken per request instead of
	// two): it waits in poll(2) on this descriptor and on an eventfd that
	// internal events write (fsactor/waker.go), and puts the device in
	// O_NONBLOCK mode when serving starts. It must stay open until
	// ServeOps has returned. Required: NewServer fails without it (the
	// loop tests drive the same loop with a fake connection that brings
	// its own pollable descriptor).
	NotifyDev *os.File

	// Watchdog is how long the actor may stay inside one step while the
	// kernel waits before the watchdog logs the stacks of all goroutines
	// and counts a stall (WatchdogStalls). 0: DefaultWatchdog; negative:
	// no watchdog.
	Watchdog time.Duration

	// NotifyWorkers and NotifyQueue size the notify pool: worker
	// goroutines, and notes queued in all before new ones go to the
	// coalescing overflow set (notify.go; never dropped).
	// 0: DefaultNotifyWorkers, DefaultNotifyQueue.
	NotifyWorkers int
	NotifyQueue   int

	Log       *zap.Logger // nil: zap.NewNop()
	AccessLog bool        // one log line per FUSE op

	// Observer is told op latencies, durability waits and notification
	// delays as they happen (observer.go); nil: nobody.
	Observer Observer
}

// DefaultFlushTimeout is Config.FlushTimeout when it is 0.
const DefaultFlushTimeout = 30 * time.Second

// withDefaults fills the zero values of c that have defaults.
func (c Config) withDefaults() Config {
	if c.FlushTimeout <= 0 {
		c.FlushTimeout = DefaultFlushTimeout
	}
	if c.NotifyWorkers <= 0 {
		c.NotifyWorkers = DefaultNotifyWorkers
	}
	if c.NotifyQueue <= 0 {
		c.NotifyQueue = DefaultNotifyQueue
	}
	if c.Watchdog == 0 {
		c.Watchdog = DefaultWatchdog
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	return c
}

// Server serves one mounted volume: it implements fuse.Server with the
// actor goroutine, which reads the device and steps the state, its tasks
// (loop.go) and a notify pool (notify.go). docs/threads.md lists them all.
type Server struct {
	cfg  Config
	loop *loop
	// phase says who releases what the server holds: ServeOps when it ran
	// (at its end), Close when it never ran.
	// INVARIANT: moves only forward, phaseNew → phaseServing or phaseNew →
	// phaseClosed, by CompareAndSwap: exactly one of ServeOps and Close
	// owns the release.
	phase atomic.Int32
	// snapSlot holds a token while a streamed snapshot is in progress.
	snapSlot chan struct{}
	// st is the state when it is a *State (NewServer), nil with a fake
	// machine: read only through its goroutine-safe counters.
	st *State
}

// ErrNotImplemented marked the stub before the actor landed; nothing
// returns it any more. Kept for callers written against the stub.
var ErrNotImplemented = errors.New("fsactor: not implemented")

// NewServer builds the actor for a volume, from snap when it is recovered
// (nil: a new, empty volume with only its root directory). A nil sink is a
// DiscardSink; with a DiscardSink data records carry no content
// (Config.DiscardContent).
func NewServer(cfg Config, sink Sink, snap *Snapshot) (*Server, error) {
	cfg = cfg.withDefaults()
	if cfg.NotifyDev == nil {
		return nil, fmt.Errorf("fsactor: volume %q: Config.NotifyDev is required (the actor polls it)", cfg.Volume)
	}
	if cfg.Follower && !cfg.DisableWritebackCache {
		return nil, fmt.Errorf("fsactor: volume %q: a follower needs DisableWritebackCache (and a mount without writeback caching): the kernel would keep its own file sizes", cfg.Volume)
	}
	if sink == nil {
		sink = &DiscardSink{}
	}
	if _, ok := sink.(*DiscardSink); ok {
		cfg.DiscardContent = true
	}
	st, err := NewState(cfg, snap)
	if err != nil {
		return nil, fmt.Errorf("fsactor: volume %q: %w", cfg.Volume, err)
	}
	s, err := newServer(cfg, st, sink)
	if err != nil {
		st.Close()
		return nil, err
	}
	s.st = st
	return s, nil
}

// ContentCopies counts the copies of file contents the actor made because
// a file changed while a data record's view could still read it
// (content_view.go). Safe from any goroutine; for metrics and tests.
func (s *Server) ContentCopies() uint64 {
	if s.st == nil {
		return 0
	}
	return s.st.ContentCopies()
}

// newServer wires a Server around a state machine (a fake one in tests).
func newServer(cfg Config, st machine, sink Sink) (*Server, error) {
	log := cfg.Log.With(zap.String("volume", cfg.Volume))
	var dev io.Writer
	if cfg.NotifyDev != nil {
		dev = cfg.NotifyDev
	}
	pool := newNotifyPool(dev, cfg.NotifyWorkers, cfg.NotifyQueue, sampled(log))
	pool.obs = cfg.Observer
	l, err := newLoop(st, sink, loopConfig{
		flushTimeout: cfg.FlushTimeout, accessLog: cfg.AccessLog,
		log: log, notify: pool, mailbox: defaultMailbox, watchdog: cfg.Watchdog,
		observer: cfg.Observer,
	})
	if err != nil {
		pool.close()
		return nil, err
	}
	return &Server{cfg: cfg, loop: l, snapSlot: make(chan struct{}, 1)}, nil
}

// Phases of a Server (Server.phase).
const (
	phaseNew     int32 = iota // built by NewServer; ServeOps and Close not called yet
	phaseServing              // ServeOps started: it releases everything when it returns
	phaseClosed               // Close released everything; ServeOps will not serve
)

// ServeOps implements fuse.Server: it reads ops until the kernel closes the
// connection and returns once every op was answered and every task ended.
// Then the state is closed (its memfds released), the notify pool stopped,
// the waker's eventfd closed and the watchdog stopped. It must be called
// at most once; after Close it returns at once without reading an op.
func (s *Server) ServeOps(c *fuse.Connection) {
	if !s.phase.CompareAndSwap(phaseNew, phaseServing) {
		s.cfg.Log.Error("fsactor: ServeOps on a closed or already serving server",
			zap.String("volume", s.cfg.Volume))
		return
	}
	s.loop.run(fuseConn{c: c, dev: int(s.cfg.NotifyDev.Fd())})
}

// Close releases everything a Server holds when ServeOps never ran (the
// mount failed after NewServer): the notify workers, every memfd, the
// waker's eventfd; no watchdog goroutine runs before ServeOps. After Close,
// Done is closed and calls on the actor answer ErrStopped. If ServeOps has
// started, ServeOps releases everything when it returns and Close waits
// for that (so unmount first). Close is idempotent and safe to call from
// any goroutine; it always returns nil.
func (s *Server) Close() error {
	if s.phase.CompareAndSwap(phaseNew, phaseClosed) {
		s.release()
	}
	<-s.loop.stopped
	return nil
}

// release frees what a loop that never ran holds, as loop.run does at its
// end: the waker's eventfd, the state's memfds, the notify workers. The
// watchdog's goroutine starts only in run, so there is none to stop.
func (s *Server) release() {
	l := s.loop
	l.wk.close()
	l.st.Close()
	l.notify.close()
	close(l.stopped)
}

// fuseConn adapts *fuse.Connection (whose ReadOp returns interface{}) to
// conn; dev is Config.NotifyDev, a descriptor of the same open file that
// jacobsa reads, for the actor's poll(2).
type fuseConn struct {
	c   *fuse.Connection
	dev int
}

func (f fuseConn) ReadOp() (context.Context, any, error)      { return f.c.ReadOp() }
func (f fuseConn) Reply(ctx context.Context, err error) error { return f.c.Reply(ctx, err) }
func (f fuseConn) Fd() int                                    { return f.dev }

// Done is closed once ServeOps has returned.
func (s *Server) Done() <-chan struct{} { return s.loop.stopped }

// RemoveName deletes parent/name as if by the filesystem itself (tests;
// a follower applies its primary's records instead: ApplyRecords, and
// answers EROFS here) and tells the kernel through the notify pool, so the name disappears from its caches. It runs on the
// actor, in order with FUSE ops. If ctx ends before the actor got to it,
// the removal may still happen later.
func (s *Server) RemoveName(ctx context.Context, parent uint64, name string) error {
	var err error
	if cerr := s.loop.call(ctx, func(m machine) {
		err = m.RemoveName(parent, name, time.Now())
	}); cerr != nil {
		return cerr
	}
	return err
}

// Snapshot returns a consistent copy of the whole volume, taken on the actor.
func (s *Server) Snapshot(ctx context.Context) (*Snapshot, error) {
	var snap *Snapshot
	var err error
	if cerr := s.loop.call(ctx, func(m machine) { snap, err = m.Snapshot() }); cerr != nil {
		return nil, cerr
	}
	return snap, err
}

// SetReadOnly turns the volume read-only (mutations answer EROFS) and logs
// why, once. The loop does it by itself when the sink says ErrFenced.
func (s *Server) SetReadOnly(ctx context.Context, why string) error {
	return s.loop.call(ctx, func(machine) { s.loop.setReadOnly(why) })
}

// Do runs fn on the actor, in order with FUSE ops, and waits until it has
// run: the entry of remote changes (followers) and of tests. fn must not
// block, and must not keep st: it is valid only during the call. The
// records and notes fn makes the state produce are applied after it, as a
// FUSE op's Effects are (loop.apply): records to the sink, notes to the
// notify pool.
func (s *Server) Do(ctx context.Context, fn func(st *State)) error {
	return s.loop.call(ctx, func(m machine) {
		st, ok := m.(*State)
		if !ok {
			panic(fmt.Sprintf("fsactor: Do on a %T, not a *State", m))
		}
		fn(st)
	})
}

// OpCounts returns how many FUSE requests of each kind were answered so far,
// by name ("lookup", "getattr", "create", "flush", ...; "unknown" for ops
// jacobsa/fuse does not decode). Kinds never seen are absent.
func (s *Server) OpCounts() map[string]uint64 { return s.loop.stats.opCounts() }

// ErrnoCounts returns how many requests were answered with each errno, keyed
// "op/ERRNO" (e.g. "lookup/ENOENT", "flush/EIO").
func (s *Server) ErrnoCounts() map[string]uint64 { return s.loop.stats.errnoCounts() }

// Ping returns once the actor has run an empty event, in order with FUSE
// ops: the actor is alive and steps. It makes no request to the mount, so
// the serving process may call it (/healthz does).
func (s *Server) Ping(ctx context.Context) error {
	return s.loop.call(ctx, func(machine) {})
}

// WatchdogStalls is how many times the watchdog found the actor stuck in
// one step for longer than Config.Watchdog while the kernel waited.
func (s *Server) WatchdogStalls() uint64 {
	if s.loop.dog == nil {
		return 0
	}
	return s.loop.dog.stalls.Load()
}

// NotifyStats returns what the notify pool did so far.
func (s *Server) NotifyStats() NotifyStats { return s.loop.notify.stats() }
