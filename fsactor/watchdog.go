package fsactor

import (
	"runtime"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// DefaultWatchdog is Config.Watchdog when it is 0.
const DefaultWatchdog = 5 * time.Second

// watchdog notices an actor that is stuck: inside one step for longer than
// bound while the kernel waits (for the op being stepped, or with a
// request nobody has read). It then logs one error with the stacks of all
// goroutines and counts the stall; it logs again only for a later stall.
// It makes no request to the mount: it reads the actor's mark and polls the
// device with no timeout.
type watchdog struct {
	bound time.Duration
	log   *zap.Logger
	base  time.Time // marks are monotonic nanoseconds since base

	// mark is written by the actor only: 0 while it waits for work (poll,
	// or the mailbox); else (t<<1)|op, t the nanoseconds since base at which
	// its current step started, op 1 when that step is a FUSE op (the
	// kernel waits for its answer).
	mark atomic.Int64

	stalls atomic.Uint64 // stalls reported so far
	// looks counts the looks at the actor taken so far, counted once each
	// has decided: tests wait for looks instead of sleeping through some.
	looks atomic.Uint64

	// kernelWaiting says whether the kernel has a request nobody has read
	// (waker.kernelWaiting); nil: never (the loop without a device).
	kernelWaiting func() bool

	quit chan struct{}
	done chan struct{}
}

func newWatchdog(bound time.Duration, log *zap.Logger) *watchdog {
	if bound <= 0 {
		return nil
	}
	return &watchdog{bound: bound, log: log, base: time.Now(),
		quit: make(chan struct{}), done: make(chan struct{})}
}

// idle marks the actor as waiting for work. Actor only; nil does nothing.
func (d *watchdog) idle() {
	if d != nil {
		d.mark.Store(0)
	}
}

// begin marks the start of a step at now (an op's stamp, or the clock for
// an internal event). Actor only; nil does nothing.
func (d *watchdog) begin(now time.Time, op bool) {
	if d == nil {
		return
	}
	m := (max(int64(now.Sub(d.base)), 0) + 1) << 1 // never 0, even at base
	if op {
		m |= 1
	}
	d.mark.Store(m)
}

// run is the watchdog's goroutine: it looks every bound/4.
func (d *watchdog) run() {
	defer close(d.done)
	t := time.NewTicker(max(d.bound/4, time.Millisecond))
	defer t.Stop()
	var reported int64 // the mark of the last stall reported
	for {
		select {
		case <-t.C:
			reported = d.check(reported)
		case <-d.quit:
			return
		}
	}
}

// check looks at the actor once and reports a new stall; it returns the
// mark of the last stall reported.
func (d *watchdog) check(reported int64) int64 {
	defer d.looks.Add(1)
	m := d.mark.Load()
	if m == 0 || m == reported {
		return reported
	}
	stuck := time.Since(d.base) - time.Duration(m>>1-1)
	op := m&1 != 0
	if stuck < d.bound || (!op && (d.kernelWaiting == nil || !d.kernelWaiting())) {
		return reported
	}
	n := d.stalls.Add(1)
	d.log.Error("watchdog: the actor is stuck in one step while the kernel waits; stacks of all goroutines follow",
		zap.Duration("stuck_for", stuck), zap.Bool("in_fuse_op", op), zap.Duration("bound", d.bound),
		zap.Uint64("stalls", n), zap.String("goroutines", allStacks()))
	return m
}

// stop ends the goroutine and waits for it; nil does nothing.
func (d *watchdog) stop() {
	if d != nil {
		close(d.quit)
		<-d.done
	}
}

// allStacks returns the stacks of every goroutine (runtime.Stack, all).
func allStacks() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) || len(buf) >= 64<<20 {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}
