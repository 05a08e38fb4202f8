// Package replication ships the records of a volume to its replicas, stores
// them there in buntdb, fences old primaries with terms and recovers a
// volume from its replicas. It never imports FUSE or fsactor: its Record
// and Snapshot are package volume's, the same types fsactor emits and
// restores, and node hands them across as they are (node/replsink.go).
//
// # Replica side (ReplicaServer)
//
// One buntdb database per volume under the data directory (store.go), one
// gRPC service (server.go). A Ship stream (ship.go) has two goroutines: a
// receiver decodes and reassembles records and queues them; the applier
// drains whatever is queued, validates and applies it against an overlay
// of the database (apply.go), writes it in one batch and fsyncs once
// (group commit), then acknowledges the highest durable lsn. A batch with
// one bad record is rejected whole with InvalidArgument or
// FailedPrecondition and changes nothing. Each batch made durable is
// logged at debug level ("batch durable": volume, term, first_lsn and
// last_lsn, the fsync's duration and reqs, the ids of the FUSE requests
// that produced its records on the primary — Record.Req, proto field 17,
// per record because one Ship stream carries the records of every request
// and its gRPC metadata is sent once when it opens; docs/operations.md,
// "Following one message").
//
// Crash safety of a batch: buntdb writes a transaction as a run of
// commands in map order, and a process killed inside write(2) — or a power
// cut before the fsync — may leave a prefix of them, that is, part of a
// batch. So a batch is written as one command: its physical change set
// (every key it sets or deletes, the position included) as the value of
// one key, l:<lsn>, then one fsync. buntdb drops a command cut short at
// the end of the file when it opens it, so a batch is on disk whole or not
// at all (TestBatchWholeOrNotAtAll). The volume itself lives in a second,
// in-memory buntdb database (mem), which opening builds from the file's
// compacted keys and then its log entries in lsn order, which each batch
// updates after its fsync, and which every read uses. When the file has
// doubled (and passed 64 MiB) the store rewrites it from mem without log
// entries — a new file fsynced, renamed over the old one, the directory
// fsynced — at a threshold with a random factor, so that replicas holding
// the same records do not all stall at once; the rewrite runs after the
// batch's ack has gone out (ship.go, volume.maybeShrink). buntdb's own SyncPolicy is Never and
// its automatic shrink is off: the store fsyncs through its own
// descriptor, so an fsync error is seen (buntdb drops it), and buntdb's
// Shrink sleeps 250 ms and renames a file it never fsynced. That fsync is
// a raw system call (fsync.go): through os.File.Sync the Go scheduler
// would hand the applier's P to another thread for the length of every
// fsync and take it back after, two or three thread switches per commit
// on a replica whose GOMAXPROCS is its stream count.
//
// buntdb keeps no checksums, so every log entry carries a CRC-32C, and
// opening a file cuts it after the last whole command whose entry checks
// out (logcheck.go): on a file system that can show an append's new size
// without all of its data, what a power cut leaves of the last,
// unacknowledged batch is dropped whole. A bad entry or a broken command
// with whole log entries after it, or bytes that start no command, are
// damage, and the file is moved aside.
//
// What is reported as stored is on disk. Opening a volume fsyncs its
// file first: a process killed between a batch's write and its fsync
// leaves the batch in the page cache, unacknowledged, and without that
// fsync a restarted replica would report it before the kernel wrote it.
// A commit whose write or fsync fails leaves the volume unusable and a
// marker (<volume>.db.failed) holding the file's size at its last good
// fsync: Linux may keep the pages of a failed fsync in the page cache
// marked clean and never write them, so the next open cuts the file back
// to that size before reading it (store.go, cutToDurable). The volume
// opens again when next used, at first once a second, then backing off to
// every 30 s while it fails (server.go, usable):
// a disk that was full serves again once space is freed.
//
// The accepted term of a volume lives in a small sidecar file
// (<volume>.term, written with write-fsync-rename-fsync), so that a replica
// that must throw away a corrupt database still remembers which terms it
// refused: forgetting a term would let an old primary count it again.
//
// Installs (full resync) build a fresh database file next to the old one
// and rename it over, so they are atomic too. The file is written as the
// snapshot arrives, one inode at a time, directly in buntdb's format
// (install.go): buntdb holds every key of a database it writes, so a
// volume written through it, on top of the received snapshot and the old
// volume, held the volume three times over. The checks that need the
// whole snapshot (references, the tree) run at the end on the inodes kept
// without their contents; the old volume is let go before the new file is
// read back. Compaction writes its file the same way.
//
// # File contents: extents on the wire, chunks on the replica
//
// A file's content travels as a list of extents (offset, length), the
// runs that are not holes as the actor's memfd reports them (lseek
// SEEK_DATA/SEEK_HOLE), and the bytes of those runs one after another
// (Record.Extents and Data, SnapInode.Extents and Data; no extents: the
// data starts at offset 0, the common dense file). Holes are never sent:
// one byte at 2 GiB is a record of one byte, on the wire, in the primary's
// log, in a snapshot. A data record from the actor arrives with a view of
// the file's memfd instead of bytes (Record.Content); the primary reads it
// off the actor before any link may send it (readcontent.go). A data
// record either states the file's whole content (holes and extents) or,
// Partial (protocol version 2, ranges.go), only the byte ranges changed
// since the file's previous data record (Record.Ranges, with the extents
// inside them): applying it sets the bytes inside the ranges, leaves the
// others, and gives the file the record's size. That is exact because
// every size change travels as a setattr record and a replica applies
// every record in LSN order (or gets a snapshot, whose content at its LSN
// the later records' ranges patch). Replicas validate extents (sorted,
// not overlapping, not empty, within the size, adding up to the data, at
// most maxExtents) and ranges (sorted, merged, within the size, every
// extent inside one) and reject bad ones with InvalidArgument. Replicas
// of version 1 refuse a version-2 primary at the handshake (version.go),
// so no replica ever takes a partial record for a whole one. The primary
// counts the data bytes it ships per record (Status().DataBytes, the
// observer's DataRecord: spoolfs_replication_shipped_bytes_total).
//
// A replica stores a file in fixed chunks of 64 KiB, one key each,
// c:<ino>:<chunk index>, holding the chunk up to its last non-zero byte; a
// chunk of zeros is not stored (content.go). Memory (mem) and disk follow
// what was written. A whole data record sets only the chunks whose bytes
// differ from what is stored and deletes the chunks it no longer has; a
// partial one reads, patches and stores again only the chunks its ranges
// touch (ranges.go). Either way the batch a rewrite logs holds the chunks
// it changed, not the file; a truncate drops the chunks past the new size
// and cuts the one it falls in. Snapshots (Fetch, install) are read from
// and written to chunks, and sent as pieces of at most chunkSize (1 MiB)
// per message (snapshot.go, appendPieces): a large file is many messages,
// never one; a sender holds one file's content at a time (the replica's
// Fetch reads it from its chunks, the actor's streamed snapshot from its
// memfd).
//
// Format change: files written before chunks hold a file's content as one
// value, c:<ino>. Opening such a file converts every one into chunks in
// mem and rewrites the file at once (volStore.convert); the volume does
// not open until that rewrite succeeds, so a file never mixes the two
// formats. An older spoolfs cannot read the new format (downgrading a
// replica means wiping it and letting the primary install a snapshot). On
// the wire, a replica of this version takes an older primary's records (no
// extents: data from offset 0), but an older replica would misplace a
// sparse file's extents: upgrade replicas before primaries.
//
// # Primary side (Primary)
//
// OpenPrimary (recover.go) acquires term T = highest seen + 1 from W
// replicas, loads the most advanced granting replica's state (last term,
// then lsn), installs it under T on other granting replicas until W hold
// it (none when W are at its position already: the others catch up over
// their links once the primary serves) and returns it as the snapshot
// the actor starts from. Then each replica has
// one goroutine (stream.go) that owns a Ship stream: it sends records from
// the in-memory log as they are appended without waiting for acks (a
// bounded window), a receiver goroutine reads the acks, and on any error
// the link reconnects with exponential backoff and resumes from the
// replica's reported position — or installs a full snapshot (from the
// SnapshotSource the node sets; see Installs) when the log no longer
// reaches back, the replica's history differs from the primary's, or it
// rejected a record.
// The node's source is a streamed snapshot of the actor: sendSnapshot
// reads each file's content (Snapshot.Content) as it sends it, so the
// primary holds one file of it at a time.
//
// # Installs
//
// A replica the log no longer reaches gets a snapshot, and then the records
// after the snapshot's LSN from the log. An install takes time (seconds
// per GiB), and the primary keeps writing meanwhile, so the log keeps
// those records for it (pin.go): from the start of the install, a pin on
// the link holds every record above the head (then above the snapshot's
// LSN, then above the replica's acks) until the replica lags by less than
// half of MaxLogBytes again. Records at or below the pin, and all records
// of a replica waiting for a snapshot, are trimmed as usual. Before the
// pin, the log dropped its oldest records whenever it passed MaxLogBytes,
// those included: an install longer than it takes to write MaxLogBytes
// ended in "log starts after the replica's lsn" and another install, in a
// loop for as long as the writes went on (docs/failures.md, 3a).
//
// A pin is bounded: it keeps at most max(MaxLogBytes, the snapshot's
// content bytes). Whenever the replica installs and applies faster than
// the primary writes, what is written during an install weighs less than
// the snapshot, so the bound holds and the replica converges after one
// install. Past the bound the writes outran the replica, and no install
// could converge without slowing the writers for a replica the quorum
// does not need. Then the pin gives up at once (the log is never held
// beyond it, and Append, which finds out, neither blocks nor logs: it
// cancels the session), the install stops rather than finishing into
// another one, and the next install waits as long as the stopped one ran,
// doubling while installs keep being outrun (up to 5 minutes). There is
// one link goroutine per replica, so at most one install per replica is
// in flight. Status counts installs started, installs outrun (Overflows),
// and snapshots needed again before the replica caught up after one
// (Repeats: an install loop).
//
// # Quorum first
//
// A Wait wakes only the W links whose replicas acknowledged fastest lately
// (ackEWMA, from the send time of each batch to its ack); the others send
// when the ShipDelay timer fires, so the trailing replica commits a batch
// per ShipDelay rather than one per waited record. If the record is not
// durable within the hedge delay, the Wait wakes every link. A link wakes
// itself after an ack only when its in-flight window was full.
//
// Durable() is the W-th highest acknowledged lsn. A replica answering
// "fenced" makes the whole Primary fenced: every Wait fails with ErrFenced.
//
// # Quorum lost: fail fast
//
// A Wait whose deadline (the flush timeout) passes with its record not
// durable marks the quorum lost: every Wait for a record not yet durable
// then fails at once with ErrNoQuorum, the ones already waiting included,
// until that record is durable (Status().QuorumLost meanwhile). A covering
// call (rename, link) waits while the kernel holds its directory's lock;
// without this, each writer's rename would wait the whole timeout in turn
// and the directory would freeze for as many timeouts (docs/failures.md,
// 2). The records stay in the log and are shipped when replicas return.
//
// # Fencing
//
// A replica's refusals that the primary acts on carry a reason, an
// errdetails.ErrorInfo in the gRPC status (errors.go: FENCED,
// NOT_ACQUIRED), never read from the message. When a replica accepts a
// higher term (Acquire) it closes the volume's termCh, and every Ship
// stream of a lower term ends with FENCED: an idle primary learns that it
// was deposed within milliseconds; a link that was reconnecting learns it
// at its next handshake, within MaxBackoff (1 s). A silent connection (a
// partition, a stopped replica) is ended by the client keepalive (10 s +
// 5 s) and the link reconnects; a partition that heals sooner lets TCP
// deliver what it held. Readiness does not wait for the keepalive: each
// link notes when its replica last answered (handshake, ack, or a probe of
// the gRPC health service that ReplicaServer.Register serves), and
// Primary.Answering counts the connected replicas that answered within a
// bound (node's /readyz: 3 s).
//
// # Versions
//
// The first message of each conversation carries the protocol version its
// sender speaks, and the replica answers in it (version.go; 0, from a
// release older than the field, is 1). A replica refuses a version outside
// the range it serves with FailedPrecondition and reason PROTOCOL_VERSION;
// the primary does the same with an answer it cannot read, and OpenPrimary
// gives up at once (ErrProtocolVersion) when too few replicas speak its
// version to make W: no retry changes a version. A release that changes
// the wire keeps serving the version before, so replicas upgraded first
// still serve the old primaries (docs/operations.md, "Rolling upgrade").
//
// # Followers (watch.go, watchring.go, follower.go, followsession.go)
//
// A replica volume keeps a watch ring: the records each batch made durable,
// appended after its fsync, bounded in bytes (WithWatchBuffer, 64 MiB; the
// newest record stays even alone above it). Watch streams are served from
// it, each at its own cursor, never from the database; the applier never
// waits for them. The ring restarts empty at the volume's position when the
// store opens and when a snapshot is installed; a watcher whose position
// it does not cover, or holds on another history, gets WATCH_RESYNC
// (IsWatchResync). Idle streams carry a heartbeat each WatchHeartbeat.
// A Fetch takes the volume's keys under its lock and sends them without
// it (frozen.go): a follower loading a snapshot slowly does not hold the
// replica's commits. Its receivers (recovery, followers) read each message
// into one buffer and decode it themselves, contents aliasing the buffer
// (fetchrecv.go): the wire format is SnapshotChunk's.
// WithFollowAllow restricts, over mTLS, which nodes may Watch and Fetch a
// volume (docs/replication-protocol.md, "Watch: followers").
//
// A Follower (OpenFollower, Run, Close, Status) loads a snapshot from the
// most advanced replica answering Status (telling FollowerConfig.Progress
// how it loads, as a recovery does), then applies to a FollowTarget
// (fsactor.Server) the records a Watch stream brings, tracking the
// (term, lsn) applied. It switches replica when a stream fails, stays
// silent for DeadAfter (3 heartbeats) or its source stays behind, with
// backoff; on WATCH_RESYNC, or when the target refuses records, it loads a
// snapshot not older than what it handed the target and calls Resync. It
// never hands the target anything older than what it applied.
//
// # Backups
//
// dump.go: WriteDump writes what a replica's Fetch sends to a file, and
// Restore takes a new term from W replicas and installs a dump under it
// with that term as its last term, so that the next primary recovers the
// dump and nothing written before it (spoolfs dump, spoolfs restore).
//
// # Goroutines
//
//   - Replica, per Ship stream: the gRPC handler goroutine is the applier
//     (validates, commits, sends acks); a receiver goroutine reads and
//     decodes messages into the session's queue (64 messages). The
//     receiver ends when the stream does; the handler returning ends it.
//     The applier also ends the stream when the volume accepts a higher
//     term (termCh).
//   - Primary, per replica: one link goroutine (run) that owns the stream
//     and sends; per session one receiver goroutine reading acks, which the
//     link waits for before starting the next session; and one probe
//     goroutine (probe.go) that asks the replica's gRPC health service
//     each ProbeInterval (1 s) in which it heard nothing from it, so that
//     Answering tells a silent replica within seconds. Close cancels them
//     all and waits. Append, Durable and Status only take Primary.mu for a
//     moment; Wait blocks on a channel that is closed whenever Durable
//     advances or the primary fails.
//   - OpenPrimary: one short-lived goroutine per replica per Acquire round
//     and per recovery install.
//   - Replica, per Watch stream: the gRPC handler goroutine reads the ring
//     and sends (watcher.run); it ends with the stream, a WATCH_RESYNC, or
//     CloseWatches / Close (Unavailable).
//   - Follower: Run's goroutine (the caller's) owns the Watch stream, the
//     applying and the resyncs; per Status round one short-lived goroutine
//     per replica; a timer (DeadAfter) cancels a silent stream. Close
//     cancels Run's context and waits for Run to return.
//
// # Histories
//
// A replica's position is (last term, lsn): the term of the last record it
// holds. All records of one term come from one primary, which starts from
// a base (base term, base lsn) it made a quorum hold. So a replica whose
// last term is T, or whose last term is the base term with an lsn at or
// below the base lsn, holds a prefix of this primary's history and can be
// sent the records that follow; any other replica gets a snapshot.
package replication
