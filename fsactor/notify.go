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
	Dropped uint64 // the queue was full, or there is no device
	Queued  int    // notes waiting in the queues now
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
// actor produced them. A full queue drops the note and counts it: the
// kernel then keeps a stale entry until its entry or attribute timeout
// ends, which bounds the staleness. Nothing blocks the actor.
type notifyPool struct {
	dev    io.Writer // the FUSE device; nil: every note is dropped
	shards []chan queuedNote
	wg     sync.WaitGroup
	log    *zap.Logger // sampled
	obs    Observer    // told each note's delay from post to written; never nil

	sent, benign, failed, dropped atomic.Uint64
}

// newNotifyPool starts workers writing to dev (nil: none, every note
// counts as dropped).
func newNotifyPool(dev io.Writer, workers, queue int, log *zap.Logger) *notifyPool {
	p := &notifyPool{dev: dev, log: log, obs: nopObserver{}}
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
		p.dropped.Add(1)
		p.log.Warn("notify queue full: note dropped; the kernel's entry timeout bounds staleness",
			zap.String("kind", noteKindName(n.Kind)), zap.Uint64("parent", n.Parent))
	}
}

// close stops the workers once they have written what is queued. Called by
// the actor's goroutine after its last post.
func (p *notifyPool) close() {
	for _, ch := range p.shards {
		close(ch)
	}
	p.wg.Wait()
}

// work writes the notes of one shard, one write(2) per note.
func (p *notifyPool) work(ch <-chan queuedNote) {
	defer p.wg.Done()
	var buf []byte
	for q := range ch {
		n := q.Note
		if !knownNote(n.Kind) {
			p.failed.Add(1)
			p.log.Error("unknown kernel notification kind", zap.Uint8("kind", uint8(n.Kind)))
			continue
		}
		buf = encodeNote(buf[:0], n)
		p.write(buf, n)
		p.obs.NotifyDone(time.Since(q.at))
	}
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
	return NotifyStats{Sent: p.sent.Load(), Benign: p.benign.Load(),
		Failed: p.failed.Load(), Dropped: p.dropped.Load(), Queued: queued}
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
