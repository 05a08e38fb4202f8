package fsactor

import "syscall"

// Effects is everything one step of the State asks the world to do: the
// reply, the records to ship, the kernel notifications (etcd raft's Ready).
// The State never ships, replies or notifies itself: it fills its one
// Effects buffer and the loop carries the effects out (loop.apply), in the
// order the fields below state, then resets the buffer for the next step.
//
// A step is a FUSE op (State.Handle) or an internal event run on the actor
// (RemoveName, Snapshot, the streamed snapshot's calls, anything run
// through Server.Do): all of them fill the same buffer, which the loop
// applies with the same function. Err and WaitLSN are the answer to a FUSE
// op and stay zero for an internal event.
//
// The buffer is reused from step to step (its slices keep their capacity),
// so a step that emits no record allocates nothing for its effects.
type Effects struct {
	// Records are the records the step emitted, in LSN order, numbered
	// consecutively after the records of the steps before.
	//
	// Order: appended to the sink FIRST, all of them, before the reply and
	// before the next step: an op that a later op waits on (an fsync, a
	// rename) covers them only if they are in the sink when it asks.
	// The records are immutable once here: the sink may keep them.
	Records []*Record

	// Err is the reply's error: 0 for success, else the errno the kernel
	// gets (passed through errnoOf like every reply).
	Err syscall.Errno

	// WaitLSN is the LSN the reply waits for: 0 to reply at once. With
	// WaitLSN > 0 (FLUSH, FSYNC, RELEASE of a dirty file, rename, link,
	// any mutation under Config.Sync) the op is answered only once the
	// sink holds WaitLSN durable: at once if Durable() >= WaitLSN, asked
	// after the records were appended, else from a task that waits off
	// the actor (loop.waitDurable). Always 0 when Err != 0.
	//
	// Order: after Records; the reply, or the start of the waiting task,
	// comes before Notes.
	WaitLSN uint64

	// Notes are the kernel notifications the step produced, in order.
	//
	// Order: handed to the notify pool LAST, after the reply was written
	// (or the task started): the kernel must see the answer to an op
	// before a notification about what it changed, and a notification
	// written while the kernel waits on the op it concerns can deadlock.
	Notes []Note

	// Released is the inode whose handle the step closed (RELEASE,
	// RELEASEDIR; 0 otherwise). Nothing to carry out: those ops name the
	// handle alone, and the loop puts the inode in the op's access-log
	// line.
	Released uint64

	// Limit names the limit the step ran out of (it answered ENOSPC), or
	// LimitNone. Order: after the reply, the loop tells the Observer and
	// logs it (rate-limited: limits.go).
	Limit Limit
}

// Reset empties the buffer for the next step, keeping its capacity. It
// drops the references to the records and the names of the notes, so the
// buffer holds nothing the sink or the pool owns now.
func (e *Effects) Reset() {
	clear(e.Records)
	e.Records = e.Records[:0]
	clear(e.Notes)
	e.Notes = e.Notes[:0]
	e.Err, e.WaitLSN, e.Released, e.Limit = 0, 0, 0, LimitNone
}

// Empty reports whether the buffer asks for nothing.
func (e *Effects) Empty() bool {
	return len(e.Records) == 0 && len(e.Notes) == 0 && e.Err == 0 && e.WaitLSN == 0
}
