package fsactor

import (
	"fmt"
	"math"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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

// Limits of one file, for the layers that store what the state emits (a
// replica must accept every record the state produces).
const (
	// MaxFileData is the highest offset a file can hold bytes below: a
	// data record may carry a file's whole content (its data extents,
	// holes left out: Record.Data at most this long; a snapshot does), so
	// writes and allocations past it answer EFBIG.
	MaxFileData = 4 << 30
	// MaxFileSize is the largest size (Attr.Size) a file can have, as a
	// memfd (tmpfs) allows: a hole at the end of a file costs nothing.
	MaxFileSize = math.MaxInt64
)

// maxDataEnd is MaxFileData as the handlers use it.
const maxDataEnd = MaxFileData

// State is the whole state of one volume: no goroutines, channels or clock.
// It is driven by one goroutine at a time (the actor, or a test).
//
// Every handler checks everything first and mutates after (gVisor's
// RenameAt): an op that fails changed nothing. The one exception is a
// system call on a memfd failing half way (ENOSPC in the middle of a
// write): the state then takes the memfd's own size and allocation.
type State struct {
	cfg Config

	// inodes holds every live inode by number.
	//
	// INVARIANT: inodes[rootIno] is a directory.
	// INVARIANT: every key is < nextIno.
	// INVARIANT: no inode but the root has nlink == 0, nlookup == 0 and
	// no open handle (maybeFree removed it).
	inodes  map[uint64]*inode
	nextIno uint64

	// handles holds the open file and directory handles.
	//
	// INVARIANT: every handle names a live inode; keys are < nextHandle.
	handles    map[uint64]handle
	nextHandle uint64

	// lsn is the head: the LSN of the last record emitted, or applied on
	// a follower. Changed through setLSN, which publishes it.
	// INVARIANT: applied == lsn.
	lsn uint64
	// applied is lsn for other goroutines (AppliedLSN: status, lag).
	applied atomic.Uint64

	readOnly bool // fenced or mounted read-only: mutations answer EROFS
	// follower says the state follows a primary (Config.Follower, until
	// Promote): it changes only through ApplyRecords and Resync (follow.go).
	// INVARIANT: follower implies readOnly, and no step emits a record
	// (eff.Records stays empty).
	follower  bool
	discard   bool // Config.DiscardContent: data records carry no content
	writeback bool // the kernel caches writes: it positions O_APPEND writes itself

	// used is the sum of the memfds' allocations, in bytes.
	used      int64
	capacity  int64
	maxInodes uint64

	// spare holds emptied memfds for reuse: a spool creates and deletes
	// files all day, and reusing a memfd saves memfd_create and the
	// teardown of its tmpfs inode (about 40% of the state's work on a
	// message). INVARIANT: every spare memfd has size 0, at most maxSpare.
	spare []int
	// arenas hold the small files' contents (arena.go).
	arenas arenas
	// buf is the actor's buffer for moving a slot's bytes (copyBuf).
	buf []byte
	// snap is the streamed snapshot in progress, or nil
	// (snapshot_stream.go).
	snap *snapSession
	// contentCopies counts the copies unshare made (ContentCopies); read
	// from any goroutine.
	contentCopies atomic.Uint64
	// inlineContents counts the data records whose content the actor read
	// itself, a view's dup having failed (InlineContents); read from any
	// goroutine.
	inlineContents atomic.Uint64

	// eff collects the effects of the steps since its last Reset: the
	// loop applies and resets it after every step.
	// INVARIANT: eff.Records carry consecutive LSNs ending at lsn.
	eff Effects
}

// maxSpare bounds the memfds kept for reuse.
const maxSpare = 64

// handle is one open file or directory (fuse_file_info.fh).
type handle struct {
	ino   uint64
	flags uint32 // open(2) flags of a file handle
	dir   bool
}

// NewState builds the state of a volume: from snap when it is recovered,
// else a new volume with only its root directory (stamped with the
// wall-clock time: the one place State reads a clock). The state ships
// nothing itself: its records come out in its Effects.
func NewState(cfg Config, snap *Snapshot) (*State, error) {
	st := &State{
		discard:    cfg.DiscardContent,
		cfg:        cfg,
		inodes:     make(map[uint64]*inode),
		handles:    make(map[uint64]handle),
		nextIno:    rootIno + 1,
		nextHandle: 1,
		readOnly:   cfg.ReadOnly || cfg.Follower,
		follower:   cfg.Follower,
		writeback:  !cfg.DisableWritebackCache,
	}
	st.capacity, st.maxInodes = limits(cfg)
	if snap == nil {
		st.newRoot(time.Now())
		return st, nil
	}
	if err := st.restore(snap); err != nil {
		st.Close()
		return nil, fmt.Errorf("fsactor: restore snapshot at lsn %d: %w", snap.LSN, err)
	}
	return st, nil
}

// limits derives Capacity and MaxInodes when the config leaves them 0:
// the machine's memory, and one inode per 8 KiB of it (tmpfs's default,
// half the pages). Inodes no longer follow the open-file limit: small
// files share memfd arenas (arena.go).
func limits(cfg Config) (capacity int64, maxInodes uint64) {
	capacity = int64(min(cfg.Capacity, math.MaxInt64))
	if capacity == 0 {
		var si unix.Sysinfo_t
		if unix.Sysinfo(&si) == nil {
			capacity = int64(min(uint64(si.Totalram)*uint64(si.Unit), math.MaxInt64))
		}
		if capacity == 0 {
			capacity = 1 << 30
		}
	}
	maxInodes = cfg.MaxInodes
	if maxInodes == 0 {
		maxInodes = max(uint64(capacity)/defaultBytesPerInode, 1024)
	}
	return capacity, maxInodes
}

// defaultBytesPerInode is the capacity per inode when --max-inodes is 0.
const defaultBytesPerInode = 8 << 10

// newRoot makes the root directory of a new volume.
func (st *State) newRoot(now time.Time) {
	mode := st.cfg.RootMode & 0o7777
	if mode == 0 {
		mode = 0o755
	}
	ns := now.UnixNano()
	root := &inode{ino: rootIno, content: noContent, nlookup: 1, dir: newDir(rootIno)}
	root.attr = Attr{Mode: syscall.S_IFDIR | mode, Uid: st.cfg.RootUid, Gid: st.cfg.RootGid,
		Nlink: 2, Atime: ns, Mtime: ns, Ctime: ns}
	st.inodes[rootIno] = root
}

// SetWritebackCache tells the state whether the kernel caches writes
// (jacobsa's default; off with MountConfig.DisableWritebackCaching). With
// writeback caching the kernel positions O_APPEND writes itself and may
// write dirty pages back through any writable handle, O_APPEND ones
// included, so the state must take write offsets as given. Without it the
// state moves every write through an O_APPEND handle to the end of the
// file. The default is on: the kernel's offsets are right either way on a
// volume with one writer, and only honouring O_APPEND under writeback
// would corrupt data.
func (st *State) SetWritebackCache(on bool) { st.writeback = on }

// Handle runs one jacobsa/fuse op (a *fuseops.XxxOp) on the state: it
// checks everything first, then mutates and fills the op's output fields.
// It returns the state's Effects buffer with the step's reply error and
// the LSN the reply waits for (Effects.Err, Effects.WaitLSN: set by this
// call) after the records and notes of every step since the buffer's last
// Reset. The caller applies them in the order Effects states and resets
// the buffer before the next step (the loop does both in loop.apply). Ops
// the state does not know answer ENOSYS.
func (st *State) Handle(op any, c Caller, now time.Time) *Effects {
	return st.handleKind(kindOf(op), op, c, now)
}

// handleKind is Handle for an op whose kind the caller has found already
// (the loop classifies every op before it steps it): the op's type is
// switched on once per op. The call through the row's func value makes op
// escape: an op built on a caller's stack moves to the heap
// (BenchmarkSpoolMessage counts its ops), while the ops jacobsa decodes are
// on the heap already.
func (st *State) handleKind(k opKind, op any, c Caller, now time.Time) *Effects {
	w, e := opTable[k].handle(st, op, c, now)
	if e != 0 || st.follower {
		w = 0 // a follower has nothing of its own to make durable
	}
	st.eff.Err, st.eff.WaitLSN = e, w
	return &st.eff
}

// Effects returns the state's effects buffer: what the steps since its
// last Reset produced. The loop applies it after an internal event (a
// call run on the actor), as after a FUSE op.
func (st *State) Effects() *Effects { return &st.eff }

// RemoveName deletes parent/name as the filesystem itself (a remote change),
// putting its record and a NoteDelete for the kernel in the Effects. It works on a
// read-only volume too, but not on a follower, which emits no record and
// changes only through ApplyRecords and Resync (EROFS). A non-empty
// directory answers ENOTEMPTY.
func (st *State) RemoveName(parent uint64, name string, now time.Time) error {
	if st.follower {
		return syscall.EROFS
	}
	if e := st.removeName(parent, name, now); e != 0 {
		return e
	}
	return nil
}

// SetReadOnly turns the volume read-only (fenced): later mutations answer
// EROFS. why is logged once by the caller.
func (st *State) SetReadOnly() { st.readOnly = true }

// Close releases every memfd. The state must not be used afterwards.
func (st *State) Close() {
	for _, in := range st.inodes {
		in.closeContent()
	}
	for _, fd := range st.spare {
		memfdClose(fd)
	}
	if st.snap != nil {
		for _, c := range st.snap.moved {
			c.closeContent()
		}
		st.snap = nil
	}
	st.closeArenas()
	st.inodes, st.handles, st.spare = nil, nil, nil
}

// CheckInvariants panics if a documented invariant does not hold. Tests run
// it after every step; production never does.
func (st *State) CheckInvariants() {
	if err := st.invariantsErr(); err != nil {
		panic(fmt.Sprintf("fsactor: broken invariant: %v", err))
	}
}

// emit numbers r, a record about in, with the next LSN, marks it as in's
// last record and puts it in the Effects, for the loop to append to the
// sink; the state never touches r again.
func (st *State) emit(in *inode, r *Record) uint64 {
	st.setLSN(st.lsn + 1)
	r.LSN = st.lsn
	in.lastLSN = st.lsn
	st.eff.Records = append(st.eff.Records, r)
	return st.lsn
}

// inVolume reports whether in is part of the volume that records describe:
// an inode whose last name is gone (unlinked but open, or a removed
// directory the kernel still holds) was deleted by its unlink or rmdir
// record, so changes to it emit nothing (a replica would not know it).
func inVolume(in *inode) bool { return in.attr.Nlink > 0 || in.ino == rootIno }

// mutationWait is what a mutation whose record is lsn waits for: nothing,
// unless the volume is mounted sync.
func (st *State) mutationWait(lsn uint64) uint64 {
	if st.cfg.Sync {
		return lsn
	}
	return 0
}

// writable answers EROFS on a read-only or fenced volume.
func (st *State) writable() syscall.Errno {
	if st.readOnly {
		return syscall.EROFS
	}
	return 0
}

// note puts a kernel notification in the Effects, for the loop to hand to
// the notify pool after the reply.
func (st *State) note(n Note) { st.eff.Notes = append(st.eff.Notes, n) }
