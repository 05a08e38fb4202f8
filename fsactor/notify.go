package fsactor

import (
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Kernel notification codes (include/uapi/linux/fuse.h, enum
// fuse_notify_code): written in the error field of the out header, with
// unique = 0.
const (
	notifyInvalInode = 2 // FUSE_NOTIFY_INVAL_INODE
	notifyInvalEntry = 3 // FUSE_NOTIFY_INVAL_ENTRY
	notifyDelete     = 6 // FUSE_NOTIFY_DELETE
)

// Wire sizes: struct fuse_out_header {u32 len; s32 error; u64 unique},
// fuse_notify_inval_inode_out {u64 ino; s64 off; s64 len},
// fuse_notify_inval_entry_out {u64 parent; u32 namelen; u32 flags} + name NUL,
// fuse_notify_delete_out {u64 parent; u64 child; u32 namelen; u32 padding}
// + name NUL. namelen does not count the NUL.
const (
	outHeaderSize  = 16
	invalInodeSize = 24
	invalEntrySize = 16
	deleteSize     = 24
)

// Defaults for Config.NotifyWorkers and Config.NotifyQueue.
const (
	DefaultNotifyWorkers = 2
	DefaultNotifyQueue   = 4096
)

// NotifyStats counts what the notify pool did with the notes it was given.
type NotifyStats struct {
	Sent    uint64 // written, the kernel accepted it
	Benign  uint64 // the kernel answered ENOENT: it had no such cached entry
	Failed  uint64 // the kernel or the device answered another error (logged)
	Dropped uint64 // there is no device (a note is never dropped for room)
	// Overflowed counts the notes that found their shard's queue full and
	// went to the overflow set; Coalesced those of them that merged into
	// a note already waiting there (same name, or same inode).
	Overflowed uint64
	Coalesced  uint64
	// Queued is the notes waiting now: in the queues and in the overflow
	// set (Overflow of them).
	Queued   int
	Overflow int
}

// notifyPool writes kernel notifications to the FUSE device from a few
// worker goroutines, never from the actor: a notification about a
// directory takes that directory's lock in the kernel, which may be held
// by a process waiting for our reply to its request; written by the
// goroutine that must send that reply, it would deadlock (go-fuse says the
// same of notifications sent under filesystem locks).
//
// Notes are sharded by the directory (or inode) they concern, one queue per
// worker, so notes about one directory reach the kernel in the order the
// actor produced them while the queues have room.
//
// Bounded without dropping truth: a note dropped would leave a deleted
// message visible until the entry timeout (60 s on a follower). So a note
// that finds its queue full goes to the overflow set instead, keyed by what
// it invalidates — (kind, parent, name) for notify_delete and inval_entry,
// the inode for inval_inode — where it coalesces with a note already
// waiting for the same key (a delete keeps the newest child; an inode's
// invalidations merge, pages included if either had them). The set is
// bounded by the names and inodes of the volume touched while the queues
// were full, not by the rate of changes. The workers write it after their
// queues: each, once its queue is empty, takes notes from the set until it
// is empty too; the actor only adds to it (a short lock, never a wait for a
// worker) and kicks a worker. A note from the set may reach the kernel
// after a later note queued for the same directory; that order does not
// matter for truth, as every note only makes the kernel ask the actor again
// (docs/threads.md, "The notify pool when full").
type notifyPool struct {
	dev    io.Writer // the FUSE device; nil: every note is dropped
	shards []chan queuedNote
	wg     sync.WaitGroup
	log    *zap.Logger // sampled
	obs    Observer    // told each note's delay from post to written; never nil

	// mu guards over. INVARIANT: over holds one note per key; kick has a
	// token whenever over is not empty and no worker is taking from it.
	mu   sync.Mutex
	over map[overKey]queuedNote
	kick chan struct{} // capacity 1: the overflow set has notes

	sent, benign, failed, dropped, overflowed, coalesced atomic.Uint64
}

// overKey is what a note in the overflow set invalidates: a name in a
// directory (entry notes) or an inode (inval_inode).
type overKey struct {
	kind   NoteKind
	parent uint64
	ino    uint64
	name   string
}

// newNotifyPool starts workers writing to dev (nil: none, every note
// counts as dropped).
func newNotifyPool(dev io.Writer, workers, queue int, log *zap.Logger) *notifyPool {
	p := &notifyPool{dev: dev, log: log, obs: nopObserver{},
		over: make(map[overKey]queuedNote), kick: make(chan struct{}, 1)}
	if dev == nil {
		return p
	}
	per := max(queue/workers, 1)
	for range workers {
		ch := make(chan queuedNote, per)
		p.shards = append(p.shards, ch)
		p.wg.Add(1)
		go p.work(ch)
	}
	return p
}

// post queues n without blocking. Called by the actor only.
func (p *notifyPool) post(n Note) {
	if len(p.shards) == 0 {
		p.dropped.Add(1)
		return
	}
	key := n.Parent
	if n.Kind == NoteInvalInode {
		key = n.Child
	}
	select {
	case p.shards[key%uint64(len(p.shards))] <- queuedNote{n, time.Now()}:
	default:
		p.overflow(queuedNote{n, time.Now()})
	}
}

// overflow puts a note whose queue is full in the overflow set, merged
// with one waiting for the same key, and kicks a worker. Called by the
// actor only; never waits for a worker.
func (p *notifyPool) overflow(q queuedNote) {
	k := overKey{kind: q.Kind, parent: q.Parent, name: q.Name}
	if q.Kind == NoteInvalInode {
		k = overKey{kind: q.Kind, ino: q.Child}
	}
	p.overflowed.Add(1)
	p.mu.Lock()
	if old, ok := p.over[k]; ok {
		p.coalesced.Add(1)
		q.at = old.at // the delay counts from the first
		if q.Kind == NoteInvalInode && (old.Off >= 0 || q.Off >= 0) {
			q.Off, q.Len = 0, -1 // pages too, if either asked for them
		}
	}
	p.over[k] = q
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// takeOverflow removes one note from the overflow set.
func (p *notifyPool) takeOverflow() (queuedNote, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, q := range p.over {
		delete(p.over, k)
		return q, true
	}
	return queuedNote{}, false
}

// close stops the workers once they have written what is queued. Called by
// the actor's goroutine after its last post.
func (p *notifyPool) close() {
	for _, ch := range p.shards {
		close(ch)
	}
	p.wg.Wait()
}

// work writes the notes of one shard, one write(2) per note, and those of
// the overflow set whenever its queue is empty. When the queue is closed
// it writes what the set still holds, then returns.
func (p *notifyPool) work(ch <-chan queuedNote) {
	defer p.wg.Done()
	var buf []byte
	for {
		select {
		case q, ok := <-ch:
			if !ok {
				p.drainOverflow(buf)
				return
			}
			buf = p.writeQueued(buf, q)
			continue
		default:
		}
		if q, ok := p.takeOverflow(); ok {
			buf = p.writeQueued(buf, q)
			continue
		}
		select {
		case q, ok := <-ch:
			if !ok {
				p.drainOverflow(buf)
				return
			}
			buf = p.writeQueued(buf, q)
		case <-p.kick:
		}
	}
}

// drainOverflow writes the overflow set until it is empty (the pool is
// closing).
func (p *notifyPool) drainOverflow(buf []byte) {
	for q, ok := p.takeOverflow(); ok; q, ok = p.takeOverflow() {
		buf = p.writeQueued(buf, q)
	}
}

// writeQueued encodes and writes one note, tells the observer its delay,
// and returns the buffer for reuse.
func (p *notifyPool) writeQueued(buf []byte, q queuedNote) []byte {
	n := q.Note
	if !knownNote(n.Kind) {
		p.failed.Add(1)
		p.log.Error("unknown kernel notification kind", zap.Uint8("kind", uint8(n.Kind)))
		return buf
	}
	buf = encodeNote(buf[:0], n)
	p.write(buf, n)
	p.obs.NotifyDone(time.Since(q.at))
	return buf
}

// queuedNote is a note in a shard's queue with when it was posted.
type queuedNote struct {
	Note
	at time.Time
}

// write sends one encoded note and accounts for the kernel's answer.
func (p *notifyPool) write(b []byte, n Note) {
	_, err := p.dev.Write(b)
	switch {
	case err == nil:
		p.sent.Add(1)
	case errors.Is(err, syscall.ENOENT):
		// The kernel has no such cached entry (or the child does not
		// match): nothing to invalidate. Not an error, never retried.
		p.benign.Add(1)
	default:
		p.failed.Add(1)
		p.log.Warn("kernel notification failed", zap.String("kind", noteKindName(n.Kind)),
			zap.Uint64("parent", n.Parent), zap.Uint64("child", n.Child),
			zap.String("name", n.Name), zap.Error(err))
	}
}

func (p *notifyPool) stats() NotifyStats {
	queued := 0
	for _, ch := range p.shards {
		queued += len(ch)
	}
	p.mu.Lock()
	over := len(p.over)
	p.mu.Unlock()
	return NotifyStats{Sent: p.sent.Load(), Benign: p.benign.Load(),
		Failed: p.failed.Load(), Dropped: p.dropped.Load(),
		Overflowed: p.overflowed.Load(), Coalesced: p.coalesced.Load(),
		Queued: queued + over, Overflow: over}
}

// encodeNote appends the wire form of n (out header + body) to b; n.Kind
// must be known.
func encodeNote(b []byte, n Note) []byte {
	le := binary.NativeEndian
	code, body := int32(0), 0
	switch n.Kind {
	case NoteInvalInode:
		code, body = notifyInvalInode, invalInodeSize
	case NoteInvalEntry:
		code, body = notifyInvalEntry, invalEntrySize+len(n.Name)+1
	case NoteDelete:
		code, body = notifyDelete, deleteSize+len(n.Name)+1
	}
	b = le.AppendUint32(b, uint32(outHeaderSize+body))
	b = le.AppendUint32(b, uint32(code))
	b = le.AppendUint64(b, 0) // unique: 0 marks a notification
	switch n.Kind {
	case NoteInvalInode:
		b = le.AppendUint64(b, n.Child)
		b = le.AppendUint64(b, uint64(n.Off))
		b = le.AppendUint64(b, uint64(n.Len))
	case NoteInvalEntry:
		b = le.AppendUint64(b, n.Parent)
		b = le.AppendUint32(b, uint32(len(n.Name)))
		b = le.AppendUint32(b, 0) // flags
		b = append(append(b, n.Name...), 0)
	case NoteDelete:
		b = le.AppendUint64(b, n.Parent)
		b = le.AppendUint64(b, n.Child)
		b = le.AppendUint32(b, uint32(len(n.Name)))
		b = le.AppendUint32(b, 0) // padding
		b = append(append(b, n.Name...), 0)
	}
	return b
}

func knownNote(k NoteKind) bool {
	return k == NoteDelete || k == NoteInvalEntry || k == NoteInvalInode
}

// noteKindName names a NoteKind for logs.
func noteKindName(k NoteKind) string {
	switch k {
	case NoteDelete:
		return "delete"
	case NoteInvalEntry:
		return "inval_entry"
	case NoteInvalInode:
		return "inval_inode"
	}
	return "unknown"
}
