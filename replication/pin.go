package replication

import (
	"fmt"
	"time"

	"go.uber.org/zap"
)

// maxResyncWait caps the wait before the next install of a replica whose
// last install was outrun by the writes (doc.go, "Installs").
const maxResyncWait = 5 * time.Minute

// logPin keeps in the primary's log the records a replica being installed
// will need right after its snapshot, and then while it catches up: every
// record above lsn, up to bound bytes of them (doc.go, "Installs"). A link
// holds at most one pin, from the start of an install until the replica
// lags by less than half of MaxLogBytes again.
type logPin struct {
	// INVARIANT: every record above lsn is in the log (entries), and
	// bytes is the sum of their sizes.
	lsn   uint64
	bytes int64
	// bound is the most bytes the pin keeps: MaxLogBytes until the
	// snapshot is taken, then max(MaxLogBytes, the snapshot's content
	// bytes). Records written during an install weigh less than the
	// snapshot whenever the replica installs faster than the primary
	// writes, which is when an install can converge at all.
	bound     int64
	installed bool      // the snapshot is on the replica: it catches up
	start     time.Time // when the install started
}

// pinLocked starts an install on l: the records above the head are kept
// until the snapshot tells its LSN (caller holds p.mu). Every snapshot the
// source returns is at or above the head as it is now.
func (p *Primary) pinLocked(l *link) {
	l.pin = &logPin{lsn: p.head, bound: p.cfg.MaxLogBytes, start: time.Now()}
	l.installs++
	l.catchingUp = true
}

// unpinLocked drops l's pin, after an install that failed (the replica
// still needs one, so it needs nothing of the log) or once it caught up.
func (p *Primary) unpinLocked(l *link) {
	l.pin = nil
}

// advancePinLocked moves l's pin up to lsn: the snapshot's LSN, then the
// replica's acks. A replica installed and back within half the log bound
// is an ordinary replica again (caller holds p.mu).
func (p *Primary) advancePinLocked(l *link, lsn uint64) {
	pin := l.pin
	if pin == nil {
		return
	}
	for ; pin.lsn < min(lsn, p.head); pin.lsn++ {
		if pin.lsn+1 >= p.first {
			pin.bytes -= recordSize(p.entries[pin.lsn+1-p.first])
		}
	}
	if pin.installed && pin.bytes <= p.cfg.MaxLogBytes/2 {
		p.unpinLocked(l)
		l.catchingUp, l.resyncWait = false, 0
	}
}

// growPinsLocked adds a record of size bytes to every pin.
func (p *Primary) growPinsLocked(size int64) {
	for _, l := range p.links {
		if l.pin != nil {
			l.pin.bytes += size
		}
	}
}

// neededAfterLocked is the lsn after which l needs the log's records: its
// pin, nothing for a replica waiting for a snapshot, else its acks.
func (p *Primary) neededAfterLocked(l *link) uint64 {
	switch {
	case l.pin != nil:
		return l.pin.lsn
	case l.needResync:
		return p.head
	default:
		return l.acked
	}
}

// pinnedLocked says whether a pin keeps the record at lsn. A pin past its
// bound gives up first (overflowLocked): records are never kept beyond it.
func (p *Primary) pinnedLocked(lsn uint64) bool {
	kept := false
	for _, l := range p.links {
		if l.pin == nil || lsn <= l.pin.lsn {
			continue
		}
		if l.pin.bytes > l.pin.bound {
			p.overflowLocked(l)
			continue
		}
		kept = true
	}
	return kept
}

// overflowLocked: the writes outran l's install (or its catch-up), whose
// pin passed its bound. Finishing the install would only end in another,
// so it stops now; the next one waits as long as this one ran, doubling
// while installs keep being outrun, so that a replica slower than the
// writes does not install in a loop. The wait is logged by the link (zap
// may block; Append must not). A pin whose replica went away is dropped
// without all that.
func (p *Primary) overflowLocked(l *link) {
	ran := time.Since(l.pin.start)
	p.unpinLocked(l)
	l.needResync = true
	if l.cancel == nil {
		// No session: the replica went away during its catch-up. It
		// needs a snapshot when it is back, like any replica the log
		// no longer reaches; the writes outran nothing.
		l.catchingUp = false
		return
	}
	l.cancel() // the install's or the catch-up's session
	l.overflows++
	l.repeats++
	l.catchingUp = false
	l.resyncWait = min(max(2*l.resyncWait, ran, p.cfg.MinBackoff), maxResyncWait)
	l.resyncAfter = time.Now().Add(l.resyncWait)
	l.overflowed = true
}

// takeOverflow turns the end of a session that an overflow stopped into
// errResync, and logs it.
func (l *link) takeOverflow(err error) error {
	l.p.mu.Lock()
	overflowed, wait := l.overflowed, l.resyncWait
	l.overflowed = false
	l.p.mu.Unlock()
	if !overflowed {
		return err
	}
	l.log().Warn("the writes outran the replica's install: it stops, and the next one waits",
		zap.Duration("wait", wait), zap.NamedError("stopped", err))
	return fmt.Errorf("%w: install outrun by the writes", errResync)
}

// waitResync waits until l may start its next install.
func (l *link) waitResync() error {
	l.p.mu.Lock()
	d := time.Until(l.resyncAfter)
	l.overflowed = false // an overflow while no session ran: nothing to stop
	l.p.mu.Unlock()
	if d <= 0 {
		return nil
	}
	l.log().Info("replica's last install was outrun by the writes: waiting before the next", zap.Duration("wait", d))
	select {
	case <-time.After(d):
		return nil
	case <-l.p.ctx.Done():
		return l.p.ctx.Err()
	}
}
