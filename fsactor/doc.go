// Package fsactor is the state machine of one mounted volume and the
// goroutines that feed it.
//
// Ownership: one goroutine, the actor, owns the whole state of the volume
// (inodes, dentries, open handles, lookup counts, file contents in memfd
// arenas and memfds, the record log head). Nothing else reads or writes it and no mutex guards
// it. The actor is also the only caller of Connection.ReadOp
// (loop.serveInline): it sleeps in poll(2) on the connection's device
// (/dev/fuse, O_NONBLOCK once serving) and on an eventfd, reads an op only
// when the device is readable, and drains its mailbox when the eventfd
// fires; every internal event (a task's end or fencing, RemoveName,
// Snapshot, Do, Ping) is posted to the mailbox, then the eventfd is written
// (waker.go). The serving process never makes a FUSE request to its own
// mount. This is the loop's one mode: NewServer requires the device
// (Config.NotifyDev), and the loop tests drive the same code with a fake
// connection whose device is an eventfd, readable while it has an op
// queued (conn.Fd; fakeConn in loop_test.go). Handlers that must wait
// return a task that runs on its own goroutine and replies itself. Kernel
// notifications go through a bounded worker pool that writes to the FUSE
// device, never from the actor; a note that finds its queue full waits in
// a coalescing overflow set instead of being dropped (notify.go). A watchdog goroutine (watchdog.go) logs
// every goroutine's stack when the actor stays in one step past
// Config.Watchdog while the kernel waits.
//
// Op kinds: one table, opTable (optable.go), has a row per FUSE op kind:
// the kernel's name (counters, access log), the op type, how to get its
// OpContext, whether it creates an inode (the loop then looks up the gid),
// the handler State.Handle runs, the access log's fields and what a failed
// wait makes the kernel forget. A new op is one new row, with its opKind
// constant (stats.go) and its case in kindOf, the one type switch on ops
// (TestOpTableRows fails when a row's op type does not classify to it).
//
// Effects: State has no goroutine, clock, sink or device. Every step — a
// FUSE op (State.Handle) or an internal event run on the actor
// (RemoveName, Snapshot, the streamed snapshot's calls, Server.Do) — fills
// the state's one reused Effects buffer (effects.go, etcd raft's Ready):
// the records to ship, the reply's errno, the LSN the reply waits for, the
// kernel notes. The loop carries a step's effects out in one function,
// loop.apply, in the order written on the fields: records to the sink
// first, then the reply (or the task that waits for the LSN), then the
// notes to the notify pool, after the reply. Whether data records carry
// content is Config.DiscardContent, set by NewServer for a DiscardSink.
//
// Metrics: fsactor imports no metrics library. It counts ops and errnos
// itself (stats.go: arrays of atomics, read by OpCounts and ErrnoCounts)
// and tells a Config.Observer (observer.go) each op's latency as it is
// answered, each durability wait's op, outcome and time, and each kernel
// notification's delay; node hands it internal/metrics' histograms,
// resolved per op up front, so the hot path still allocates nothing.
//
// Invariants: the INVARIANT comments on State, inode and dir are checked by
// State.CheckInvariants (invariants.go), which the State tests run after
// every op. Built with -tags invariants (make test runs every package but
// replication so, and the spoolfs binaries the tests build too:
// testsupport.TagFlags), the actor also checks the state after each step,
// FUSE op or internal event, and once more when the loop ends, and panics on
// a broken invariant (check_invariants.go); production builds compile the
// check to nothing. The check walks the whole volume (an fstat per memfd):
// one costs 0.1 ms at 100 files, 0.8 ms at 1,000 and 29 ms at 10,000
// (BenchmarkCheckInvariants, on the shared 2-core machine), so checking
// everything after every step would make a test that creates 10,000 files
// spend minutes in checks. The check is paced instead: after every step
// while the volume has at most 64 inodes, then after every len(inodes)/64
// steps, about 64 inodes' worth of checking per step at any size. Measured
// on e2e (go test -race ./e2e, the machine loaded by other builds): 261 s
// with the tag, 351 s without, that is no cost above the noise. A broken
// invariant is then reported some steps late on a large volume, never missed
// for good: what breaks it stays broken until a check (or the final one)
// sees it, unless a later step repairs it by chance. Checking only what a
// step changed would be exact but needs every handler to say what it
// touched, a second description of each handler that could itself be wrong.
//
// Restoring a snapshot (NewState; snapshot_state.go) checks the snapshot
// itself in every build — numbers, names, link counts, a tree under the
// root, extents within sizes — and a bad one is an error wrapping
// errBadSnapshot, never a panic. The full invariants check after a
// restore (a fifth of the restore's time at 1,000,000 files) runs only
// with -tags invariants (restoreCheck): it checks the restore's code,
// which the snapshot's own checks already guard against bad input. Slot
// files are written per arena run with pwritev (restore_write.go), not
// with a pwrite each.
//
// Errors: one function, errnoOf (errno.go), maps every error a handler, a
// memfd system call or a Sink's Wait returns to the errno a FUSE reply
// carries; loop.reply applies it to every reply, the actor's and the
// tasks', and counts and logs that same errno. A Sink reports failure with
// the sentinels ErrFenced and ErrNotDurable (record.go), both EIO.
//
// Contents (content.go, arena.go): every access to a file's bytes goes
// through the content methods of content.go. A file of at most 64 KiB
// lives in a slot of a shared memfd arena (size classes from 256 B to
// 64 KiB, 1.5× apart; one arena is a sparse 64 MiB memfd), a larger one in
// a memfd of its own: descriptors grow with the arenas and the large
// files, not with the files, and a 1 KiB file costs 1 KiB. arena.go says
// why size classes and not an extent allocator.
//
// Limits (limits.go): out of --capacity, --max-inodes or descriptors, an
// op answers ENOSPC, never EIO; Effects.Limit names the limit, the loop
// tells the Observer (LimitHit) and logs it, rate-limited.
//
// Data records: a FLUSH, FSYNC or RELEASE of a dirty file emits a record.
// A small file's record carries a copy of its slot's bytes (at most
// 64 KiB, taken on the actor). A large file's content is a view of its
// memfd (Record.Content, content_view.go): the actor dup's the descriptor
// and reads nothing; the
// sink reads the view on its own goroutine and releases it, closing the
// view's descriptor there — the one descriptor that leaves the actor, and
// one the actor never uses. A change to the file while its view is unread
// copies the file first (copy on write, State.ContentCopies). The record
// is partial (dirty.go): it carries only the byte ranges written, punched
// or zeroed since the file's previous data record (inode.dirtyRanges),
// and its view reads only inside them; size changes travel as setattr
// records, so a receiver that applied every record before holds the rest.
// A follower applies partial records with patchContent.
//
// Followers (follow.go): with Config.Follower the state mirrors a primary.
// Its records enter through the mailbox (Server.ApplyRecords, an evFunc
// like Do) and are applied by State.ApplyRecords with the volume's inode
// numbers, each checked whole before it changes anything (ErrOutOfOrder,
// ErrBadRecord); every FUSE mutation answers EROFS, no record is emitted
// (an invariant) and no reply waits. The apply puts kernel notes in the
// step's Effects — notify_delete for a name removed or replaced,
// inval_entry for a new name (the kernel may cache its negative dentry for
// the entry timeout), inval_inode for a changed directory, content or
// attributes — for inodes the kernel holds (nlookup > 0) only; follow.go
// spells out the mapping and the kernel functions it rests on. An inode
// created remotely enters with nlookup 0; one unlinked remotely stays while
// the kernel (nlookup) or a handle holds it, as after a local unlink.
// AppliedLSN publishes the state's LSN to other goroutines. A follower is
// mounted without the kernel's writeback cache (Config.Follower says why;
// NewServer refuses it otherwise).
//
// Resync and Promote (resync.go): Resync brings a follower to a snapshot
// in place — the snapshot checked whole in a scratch state first, then
// names removed, inodes updated or inserted, names added, vanished inodes
// left to maybeFree — with the same notes as ApplyRecords, so open files
// and the kernel's inodes survive it. Promote is Resync, then
// State.Promote (records numbered from the snapshot's LSN+1, contents
// unless the sink is a DiscardSink, mutations allowed) and the loop's new
// sink, in one step of the actor; tasks carry the sink they started with.
//
// Release: NewServer takes memfds (the arenas and the large files of the
// snapshot), an eventfd and the notify workers. ServeOps releases them all
// when it
// returns (and stops the watchdog, which starts only there); a Server
// whose ServeOps never ran (the mount failed after NewServer) is released
// by Server.Close, which is idempotent (server.go).
//
// fsactor never imports gRPC, buntdb, replication, node or proto: records
// leave through the Sink interface (record.go), owned here. The layout
// test (internal/layout) checks it, with every other package's imports.
package fsactor
