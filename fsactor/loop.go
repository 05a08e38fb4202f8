package fsactor

import (
	"context"
	"errors"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/jacobsa/fuse/fuseops"
	"go.uber.org/zap"
)

// conn is the part of *fuse.Connection the loop uses, with the descriptor
// of its device, so tests can drive the one loop with a fake kernel.
type conn interface {
	// ReadOp returns the next op; io.EOF once the kernel hung up; an error
	// wrapping EAGAIN when no request waits (the device is non-blocking
	// once serving). Called by the actor only, when poll(2) said Fd is
	// readable.
	ReadOp() (context.Context, any, error)
	// Reply answers the op whose ReadOp ctx is given. Safe from any
	// goroutine.
	Reply(ctx context.Context, err error) error
	// Fd is the device the actor polls (waker.wait): readable while a
	// request waits or once the connection ended. /dev/fuse on a mount
	// (Config.NotifyDev); an eventfd or a pipe of a fake kernel in tests.
	Fd() int
}

// machine is what the loop drives: *State (the RawNode of etcd raft's
// layering; the loop is its node). Tests of the loop alone use a fake.
// Every call fills the machine's Effects buffer (Handle returns it,
// Effects hands it out after any other call); the loop applies and resets
// it after each step (apply).
type machine interface {
	handleKind(k opKind, op any, c Caller, now time.Time) *Effects // State.Handle, kind found
	Effects() *Effects
	RemoveName(parent uint64, name string, now time.Time) error
	SetReadOnly()
	Snapshot() (*Snapshot, error)
	Close()
}

// evKind says what an event in the mailbox carries.
type evKind uint8

const (
	evOp       evKind = iota // a FUSE op the actor read from the device (never in the mailbox)
	evTaskDone               // a task has replied
	evFenced                 // a task's sink said ErrFenced (err): turn read-only
	evFunc                   // run fn on the state (internal events)
)

// event is one mailbox entry, or the op the actor just read: a value, so
// posting one allocates nothing.
type event struct {
	kind evKind
	ctx  context.Context // evOp: the ctx ReadOp returned, to reply with
	op   any             // evOp: a *fuseops.XxxOp
	now  time.Time       // evOp: when the actor read it
	err  error           // evFenced: the sink's error
	// released (evOp) is the inode whose handle the op closed
	// (Effects.Released), for its access-log line.
	released uint64
	fn       func(m machine) // evFunc
	// done (evFunc) is closed once fn ran and its effects were applied:
	// the caller of loop.call returns after its records are in the sink.
	done chan struct{}
}

// defaultMailbox is the mailbox's capacity: 1, 64 and 1024 measured the
// same (docs/threads.md, "Measured").
const defaultMailbox = 64

// loop owns the actor goroutine, which reads the device and steps the
// state, and its tasks. It is the only place where the state is touched:
// on the actor, in run.
type loop struct {
	st       machine
	sink     Sink
	mbox     chan event
	stopped  chan struct{} // closed once the actor has ended and the state is closed
	notify   *notifyPool
	stats    *stats
	obs      Observer // never nil
	alog     *accessLog
	log      *zap.Logger
	gids     *gidSource
	gidOf    func(ctx context.Context, oc *fuseops.OpContext) uint32
	flushTTL time.Duration

	wk  *waker    // the actor's wait in poll(2) on the device and an eventfd
	dog *watchdog // nil: no watchdog

	// Actor-owned: touched only by the actor goroutine.
	c       conn
	eofSeen chan struct{}    // closed when the device ended (tests wait on it)
	tasks   int              // tasks started and not yet done
	fenced  bool             // SetReadOnly done after ErrFenced or a call
	inv     invariantChecker // -tags invariants: the pacing of the checks after each step
	limits  limitLog         // the rate limit of the log lines about limits hit
}

// loopConfig carries what newLoop needs beyond the state and the sink.
type loopConfig struct {
	flushTimeout time.Duration
	accessLog    bool
	log          *zap.Logger
	notify       *notifyPool
	mailbox      int
	watchdog     time.Duration // <= 0: no watchdog
	observer     Observer      // nil: nobody
}

func newLoop(st machine, sink Sink, lc loopConfig) (*loop, error) {
	l := &loop{
		st: st, sink: sink,
		mbox:     make(chan event, lc.mailbox),
		stopped:  make(chan struct{}),
		eofSeen:  make(chan struct{}),
		notify:   lc.notify,
		stats:    new(stats),
		obs:      lc.observer,
		alog:     newAccessLog(lc.log, lc.accessLog),
		log:      lc.log,
		gids:     &gidSource{log: lc.log},
		flushTTL: lc.flushTimeout,
	}
	if l.obs == nil {
		l.obs = nopObserver{}
	}
	l.gidOf = l.gids.gid
	wk, err := newWaker()
	if err != nil {
		return nil, err
	}
	l.wk = wk
	l.dog = newWatchdog(lc.watchdog, lc.log)
	return l, nil
}

// run serves c until the device ends, every op is answered and every task
// has ended; then it closes the state and the notify pool.
func (l *loop) run(c conn) {
	l.c = c
	l.wk.dev = c.Fd()
	if l.dog != nil {
		l.dog.kernelWaiting = l.wk.kernelWaiting
		go l.dog.run()
	}
	l.serveInline(c)
	l.wk.close()
	l.awaitTasks()
	l.dog.stop()
	l.inv.final(l.st)
	l.st.Close()
	l.notify.close()
	close(l.stopped)
}

// readFailed handles a ReadOp error and says whether reading must end: at
// EOF (unmounted) or when the device itself fails. A request jacobsa could
// not decode is logged and skipped: it has no ctx to reply with.
func (l *loop) readFailed(err error) bool {
	if errors.Is(err, io.EOF) {
		return true
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		l.log.Error("reading /dev/fuse failed: no more requests are served", zap.Error(err))
		return true
	}
	l.alog.errs.Warn("undecodable FUSE request skipped", zap.Error(err))
	return false
}

// serveInline is the actor serving the device: the reader and the actor
// in one goroutine. It waits in poll(2) on the device and the waker's
// eventfd (waker.wait), takes whatever waits in the mailbox (internal
// events, a task's fencing), reads an op if the device has one, then steps
// it. A request wakes one thread, as in libfuse's single-threaded loop;
// the two-goroutine hand-off it replaced woke two (docs/threads.md,
// "Measured"). Once the kernel hung up, awaitTasks, on the same goroutine,
// serves the tasks still running.
func (l *loop) serveInline(c conn) {
	if err := l.wk.start(); err != nil {
		l.log.Error("cannot serve the device", zap.Error(err))
		close(l.eofSeen)
		return
	}
	for {
		l.dog.idle()
		if !l.wk.wait() {
			l.drain() // woken by the eventfd alone
			continue
		}
		ctx, op, err := c.ReadOp()
		now := time.Now()
		l.drain()
		if err != nil {
			if errors.Is(err, syscall.EAGAIN) {
				l.stats.emptyReads.Add(1) // withdrawn between poll and read: poll again
				continue
			}
			if l.readFailed(err) {
				close(l.eofSeen)
				return
			}
			continue
		}
		l.step(event{kind: evOp, ctx: ctx, op: op, now: now})
	}
}

// drain handles every event waiting in the mailbox, without blocking.
func (l *loop) drain() {
	for {
		select {
		case ev := <-l.mbox:
			l.handle(ev)
		default:
			return
		}
	}
}

// send puts ev in the mailbox and wakes the inline actor (it may be asleep
// in poll(2)). When the mailbox is full it wakes the actor first and waits
// for room: a wake is then on its way (waker.pending), and the actor
// drains. Not from the actor.
func (l *loop) send(ev event) {
	select {
	case l.mbox <- ev:
	default:
		l.wk.wake()
		l.mbox <- ev
	}
	l.wk.wake()
}

// awaitTasks is the actor after the device ended: it serves the mailbox,
// blocking on it (nothing polls the device any more), until every task
// has posted evTaskDone.
func (l *loop) awaitTasks() {
	for l.tasks > 0 {
		l.dog.idle()
		l.handle(<-l.mbox)
	}
}

// handle runs one mailbox event on the actor.
func (l *loop) handle(ev event) {
	switch ev.kind {
	case evTaskDone:
		l.tasks--
	case evFenced:
		l.dog.begin(time.Now(), false)
		l.setReadOnly(ev.err.Error())
		l.apply(l.st.Effects(), nil, 0, nil)
		l.inv.step(l.st)
	case evFunc:
		l.dog.begin(time.Now(), false)
		ev.fn(l.st)
		l.apply(l.st.Effects(), nil, 0, nil)
		l.inv.step(l.st)
		close(ev.done)
	}
}

// step runs one FUSE op on the state and applies its effects.
func (l *loop) step(ev event) {
	l.dog.begin(ev.now, true)
	k, oc := classify(ev.op)
	var c Caller
	if oc != nil {
		c.Uid, c.Pid = oc.Uid, oc.Pid
		if opTable[k].creates {
			c.Gid = l.gidOf(ev.ctx, oc)
		}
	}
	l.apply(l.st.handleKind(k, ev.op, c, ev.now), &ev, k, oc)
	l.inv.step(l.st)
}

// apply carries out the effects of one step in the order the fields of
// Effects state, then resets the buffer for the next step. It is the one
// place effects leave the actor, for FUSE ops and internal events alike
// (ev is nil for an internal event: there is no reply):
//  1. every record to the sink, in LSN order, before anything a later op
//     could wait on, stamped with the op's request id (Record.Req: what
//     follows one message to the replicas' logs; 0 for internal events);
//  2. the reply at once (an error, or WaitLSN already durable: Durable is
//     asked after the records went in), or a task that waits for WaitLSN
//     off the actor and replies itself;
//  3. the notes to the notify pool, after the reply: the kernel must see
//     the answer before a notification about what it changed.
func (l *loop) apply(eff *Effects, ev *event, k opKind, oc *fuseops.OpContext) {
	var req uint64 // the op's request id, which its records carry to the replicas
	if oc != nil {
		req = oc.FuseID
	}
	for _, r := range eff.Records {
		r.Req = req
		l.sink.Append(r)
	}
	if ev != nil {
		ev.released = eff.Released
		if eff.Err != 0 || eff.WaitLSN <= l.sink.Durable() {
			l.reply(ev, k, oc, replyErr(eff.Err))
		} else {
			l.tasks++
			go l.waitDurable(l.sink, *ev, k, oc, eff.WaitLSN)
		}
	}
	for _, n := range eff.Notes {
		l.notify.post(n)
	}
	if eff.Limit != LimitNone {
		l.limitHit(eff.Limit, time.Now())
	}
	eff.Reset()
}

// reply answers an op, counts it and logs it. Called by the actor and by
// tasks.
func (l *loop) reply(ev *event, k opKind, oc *fuseops.OpContext, err error) {
	errno := errnoOf(err)   // the one mapping (errno.go): what is counted is what the kernel gets
	l.stats.count(k, errno) // before the reply: a caller that saw it sees it counted
	l.obs.OpDone(int(k), time.Since(ev.now))
	if rerr := l.c.Reply(ev.ctx, replyErr(errno)); rerr != nil {
		l.stats.replyFailed.Add(1)
		l.alog.errs.Warn("fuse reply failed", zap.String("op", k.String()), zap.Error(rerr))
	}
	l.alog.done(k, ev.op, oc, ev.now, ev.released, errno)
}

// waitDurable is a task: it waits, off the actor, until lsn is durable,
// replies, and tells the actor it is done. It carries the op (whose output
// fields the actor already filled) and touches no state.
//
// The kernel's INTERRUPT (the caller got a signal) does not cut the wait
// short: the op's change is already applied and its record queued, so
// answering EINTR would tell the caller it did not happen (a retried
// rename would then fail with ENOENT, a mail server would requeue a message
// it had published). The caller waits for the true outcome, bounded by the
// flush timeout, as for any FUSE request the kernel does not abort. A
// wait that fails also has the kernel forget what it cached about the
// names the op changed (failedWaitNotes): the change stays applied.
func (l *loop) waitDurable(sink Sink, ev event, k opKind, oc *fuseops.OpContext, lsn uint64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ev.ctx), l.flushTTL)
	waitStart := time.Now()
	err := sink.Wait(ctx, lsn) // the sink it was started with: Promote may swap l.sink
	cancel()
	took := time.Since(waitStart)
	l.obs.WaitDone(int(k), waitOutcome(err), took)
	l.logWait(k, oc, lsn, took, err)
	if errors.Is(err, ErrFenced) {
		// Before the reply: a mutation the kernel sends after seeing this
		// EIO reaches the actor after the volume turned read-only.
		l.send(event{kind: evFenced, err: err})
	}
	l.reply(&ev, k, oc, err) // any failure answers EIO (errnoOf)
	if err != nil {
		for _, n := range failedWaitNotes(k, ev.op) {
			l.notify.post(n) // safe from any goroutine
		}
	}
	l.send(event{kind: evTaskDone})
}

// logWait writes, at debug level, that the wait of the op with request id
// oc.FuseID for lsn ended: the primary's end of following one message
// (the replicas log the same id with the batch that made it durable).
func (l *loop) logWait(k opKind, oc *fuseops.OpContext, lsn uint64, waited time.Duration, err error) {
	ce := l.log.Check(zap.DebugLevel, "durability wait done")
	if ce == nil {
		return
	}
	var req uint64
	if oc != nil {
		req = oc.FuseID
	}
	ce.Write(zap.Uint64("req", req), zap.String("op", k.String()), zap.Uint64("lsn", lsn),
		zap.Duration("waited", waited), zap.Error(err))
}

// setReadOnly turns the state read-only and logs why, the first time.
func (l *loop) setReadOnly(why string) {
	if l.fenced {
		return
	}
	l.fenced = true
	l.st.SetReadOnly()
	l.log.Error("volume turned read-only: mutations answer EROFS from now on", zap.String("why", why))
}

// ErrStopped is returned by calls into a Server whose ServeOps has ended.
var ErrStopped = errors.New("fsactor: server stopped")

// call runs fn on the actor, linearised with FUSE ops, and waits until it
// ran and its effects were applied (its records are in the sink, its notes
// posted). If ctx ends first, fn may still run later.
func (l *loop) call(ctx context.Context, fn func(m machine)) error {
	done := make(chan struct{})
	ev := event{kind: evFunc, fn: fn, done: done}
	select {
	case l.mbox <- ev:
	default:
		l.wk.wake() // full: the inline actor may be asleep in poll(2)
		select {
		case l.mbox <- ev:
		case <-l.stopped:
			return ErrStopped
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	l.wk.wake()
	select {
	case <-done:
		return nil
	case <-l.stopped:
		select {
		case <-done:
			return nil
		default:
			return ErrStopped
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}
