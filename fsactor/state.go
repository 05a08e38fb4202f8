package fsactor

import (
	"syscall"
	"time"
)

// Caller is who issued an op: the kernel's fsuid, fsgid and pid.
type Caller struct {
	Uid, Gid, Pid uint32
}

// NoteKind names a kernel notification.
type NoteKind uint8

const (
	// NoteDelete tells the kernel Parent/Name (inode Child) is gone
	// (FUSE_NOTIFY_DELETE).
	NoteDelete NoteKind = iota + 1
	// NoteInvalEntry drops Parent/Name from the kernel's dentry cache
	// (FUSE_NOTIFY_INVAL_ENTRY).
	NoteInvalEntry
	// NoteInvalInode drops cached attributes and pages of Child
	// (FUSE_NOTIFY_INVAL_INODE), Off and Len as in the protocol (Len < 0: to
	// the end).
	NoteInvalInode
)

// Note is one kernel notification a step produced. The loop hands notes to
// the notify pool after the step's reply: never written by the actor.
type Note struct {
	Kind   NoteKind
	Parent uint64
	Child  uint64
	Name   string
	Off    int64
	Len    int64
}

// State is the whole state of one volume: no goroutines, channels or clock.
// It is driven by one goroutine at a time (the actor, or a test).
type State struct {
	// stub: replaced by the actor core.
}

// NewState builds the state of a volume: from snap when it is recovered,
// else a new volume with only its root directory.
func NewState(cfg Config, sink Sink, snap *Snapshot) (*State, error) {
	return &State{}, nil
}

// Handle runs one jacobsa/fuse op (a *fuseops.XxxOp) on the state: it
// checks everything first, then mutates, fills the op's output fields and
// appends any records to the sink. It returns the error to reply with
// (a syscall.Errno, or nil) and, when the reply must wait until a record is
// durable (FLUSH, FSYNC, RELEASE of a dirty file, rename, link, any
// mutation under Config.Sync), waitLSN > 0: the loop then replies only once
// the sink's Wait(waitLSN) returns (at once if Durable() >= waitLSN).
// Ops it does not know answer ENOSYS.
func (st *State) Handle(op any, c Caller, now time.Time) (waitLSN uint64, err error) {
	return 0, syscall.ENOSYS
}

// TakeNotes appends the notifications produced since the last call to buf
// and returns it; the state forgets them.
func (st *State) TakeNotes(buf []Note) []Note { return buf }

// RemoveName deletes parent/name as the filesystem itself (a remote change),
// emitting its record and a NoteDelete for the kernel.
func (st *State) RemoveName(parent uint64, name string, now time.Time) error {
	return syscall.ENOSYS
}

// SetReadOnly turns the volume read-only (fenced): later mutations answer
// EROFS. why is logged once by the caller.
func (st *State) SetReadOnly() {}

// Snapshot copies the whole volume (contents included) at the current LSN.
func (st *State) Snapshot() (*Snapshot, error) { return nil, syscall.ENOSYS }

// Close releases every memfd. The state must not be used afterwards.
func (st *State) Close() {}

// CheckInvariants panics if a documented invariant does not hold. Tests run
// it after every step; production never does.
func (st *State) CheckInvariants() {}
