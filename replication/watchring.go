package replication

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultWatchBuffer is the default bound, in bytes (as recordSize counts
// them), of each replica volume's watch ring (WithWatchBuffer).
const DefaultWatchBuffer = 64 << 20

// watchRing holds the records a replica volume made durable, in lsn
// order, newest last, for its Watch streams (watch.go): followers are
// served from memory, never by a read of the database per follower per
// record. The applier appends after each commit and never waits for a
// watcher; a watcher reads at its own cursor and, when it fell off the
// ring's tail, is told to resync. Safe for concurrent use.
//
// The ring keeps at least its newest record even when that one alone
// weighs more than the bound (a 64 MiB data record must reach followers):
// what it holds is at most max(limit, the largest record) bytes.
type watchRing struct {
	limit int64

	mu sync.Mutex
	// recs are the records after (base, baseTerm), consecutive.
	// INVARIANT: recs[i].r.LSN == base+1+i; bytes is the sum of their sizes.
	recs  []ringRec
	bytes int64
	// base is the position the ring starts after: the replica's lsn when
	// it was last reset, or the last record dropped from the tail, and
	// baseTerm that record's term.
	base, baseTerm uint64
	// epoch counts resets (opening, installs): a watcher checks its
	// position again after one, since the history may have changed.
	epoch uint64
	// wake is closed and replaced at every append and reset.
	// INVARIANT: never nil, never closed while held here.
	wake   chan struct{}
	closed bool // the replica closed its watch streams (Unavailable)
}

// ringAppendHook, when set, sees each record the rings take (tests count
// when they are freed).
var ringAppendHook atomic.Pointer[func(*Record)]

// ringRec is one record in the ring, with when it was made durable (Unix
// nanoseconds, for the followers' lag) and its weight.
type ringRec struct {
	r    *Record
	at   int64
	size int64
}

func newWatchRing(limit int64, lsn, term uint64) *watchRing {
	return &watchRing{limit: limit, base: lsn, baseTerm: term, wake: make(chan struct{})}
}

func (w *watchRing) wakeLocked() {
	close(w.wake)
	w.wake = make(chan struct{})
}

// reset empties the ring at the replica's new position (lsn of term):
// after the volume was opened, or a snapshot installed.
func (w *watchRing) reset(lsn, term uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	clear(w.recs)
	w.recs, w.bytes = w.recs[:0], 0
	w.base, w.baseTerm = lsn, term
	w.epoch++
	w.wakeLocked()
}

// shut ends every watcher's reads (the replica closes): they answer
// Unavailable from then on.
func (w *watchRing) shut() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	w.wakeLocked()
}

// last is the ring's newest position (caller holds w.mu).
func (w *watchRing) lastLocked() (lsn, term uint64) {
	if n := len(w.recs); n > 0 {
		return w.recs[n-1].r.LSN, w.recs[n-1].r.Term
	}
	return w.base, w.baseTerm
}

// position is the replica's newest position as the ring knows it.
func (w *watchRing) position() (lsn, term uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastLocked()
}

// append adds the records of batch in (from, to], just made durable at
// at (Unix nanoseconds), and drops the oldest records past the bound.
// Records outside (from, to] were resends or past a gap: not committed.
func (w *watchRing) append(batch []*Record, from, to uint64, at int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range batch {
		if r.LSN <= from || r.LSN > to {
			continue
		}
		if last, _ := w.lastLocked(); r.LSN != last+1 {
			// Cannot happen (the store commits consecutive lsns); start
			// over rather than serve a ring with a hole in it.
			clear(w.recs)
			w.recs, w.bytes, w.base, w.baseTerm = w.recs[:0], 0, r.LSN-1, r.Term
			w.epoch++
		}
		if h := ringAppendHook.Load(); h != nil {
			(*h)(r)
		}
		s := recordSize(r)
		w.recs = append(w.recs, ringRec{r: r, at: at, size: s})
		w.bytes += s
	}
	n := 0
	for w.bytes > w.limit && len(w.recs)-n > 1 {
		w.bytes -= w.recs[n].size
		w.base, w.baseTerm = w.recs[n].r.LSN, w.recs[n].r.Term
		w.recs[n] = ringRec{} // let the record go
		n++
	}
	if n > 0 {
		w.recs = w.recs[n:]
		if cap(w.recs) > 4*len(w.recs)+64 { // reclaim the dropped front
			w.recs = append([]ringRec(nil), w.recs...)
		}
	}
	w.wakeLocked()
}

// watchCursor is a watcher's position: the last record it sent (or the
// follower's position it started from) and that record's term.
type watchCursor struct {
	lsn, term uint64
	epoch     uint64 // the ring's epoch when checked was set
	checked   bool   // lsn is known to be on the ring's history
}

// read returns the records after c, about maxBytes of them (at least one
// when there is one), the ring's newest position, and the channel closed
// when the ring changes next. The error is a WATCH_RESYNC refusal when the
// ring no longer covers c or holds another history at c's lsn; a cursor
// ahead of the ring on a history it may continue waits (no records).
func (w *watchRing) read(c *watchCursor, maxBytes int64) ([]ringRec, uint64, uint64, <-chan struct{}, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	last, lastTerm := w.lastLocked()
	if w.closed {
		return nil, last, lastTerm, nil, status.Error(codes.Unavailable, "replica closing its watch streams")
	}
	if c.epoch != w.epoch {
		c.epoch, c.checked = w.epoch, false
	}
	if c.lsn < w.base {
		return nil, last, lastTerm, nil, resyncError(c, w.base, w.baseTerm,
			"position lsn %d is behind the replica's watch buffer, which starts after lsn %d", c.lsn, w.base)
	}
	if !c.checked {
		if c.lsn > last {
			if lastTerm > c.term { // a later term already holds an lsn at or below c's
				return nil, last, lastTerm, nil, resyncError(c, last, lastTerm,
					"position lsn %d of term %d: the replica is at lsn %d of term %d, another history", c.lsn, c.term, last, lastTerm)
			}
			return nil, last, lastTerm, w.wake, nil // ahead: wait for the replica
		}
		if t := w.termAtLocked(c.lsn); t != c.term {
			return nil, last, lastTerm, nil, resyncError(c, last, lastTerm,
				"position lsn %d of term %d: the replica holds lsn %d of term %d, another history", c.lsn, c.term, c.lsn, t)
		}
		c.checked = true
	}
	var out []ringRec
	var size int64
	for i := c.lsn - w.base; i < uint64(len(w.recs)) && (len(out) == 0 || size < maxBytes); i++ {
		out = append(out, w.recs[i])
		size += w.recs[i].size
	}
	return out, last, lastTerm, w.wake, nil
}

// termAtLocked is the term of the record at lsn, which the ring covers
// (base <= lsn <= last).
func (w *watchRing) termAtLocked(lsn uint64) uint64 {
	if lsn == w.base {
		return w.baseTerm
	}
	return w.recs[lsn-w.base-1].r.Term
}

// held is what the ring holds, for tests and status.
func (w *watchRing) held() (records int, bytes int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.recs), w.bytes
}

// resyncError is the refusal that tells a follower to fetch a snapshot:
// FAILED_PRECONDITION, reason WATCH_RESYNC, metadata the follower's
// position and the replica's (lsn, term) named in the message.
func resyncError(c *watchCursor, lsn, term uint64, format string, args ...any) error {
	return &rejectError{code: codes.FailedPrecondition, reason: reasonWatchResync, msg: "watch: " + fmt.Sprintf(format, args...),
		meta: map[string]string{
			"from_lsn": strconv.FormatUint(c.lsn, 10), "from_term": strconv.FormatUint(c.term, 10),
			"replica_lsn": strconv.FormatUint(lsn, 10), "replica_term": strconv.FormatUint(term, 10),
		}}
}
