package fsactor

import (
	"math"
	"syscall"

	"golang.org/x/sys/unix"
)

// A regular file's content: the one place fsactor touches a file's bytes.
//
// A file's bytes live in a slot of a shared memfd arena while its size is
// at most arenaMax (arena.go), in a memfd of its own above, or nowhere
// yet (the file reads as attr.Size zeros).
//
// Handlers, records, snapshots and the follower's apply never use a
// descriptor: they call the State methods below, which keep the
// accounting (State.used), copy on write (a data record's view, a streamed
// snapshot's freeze) and the choice of where the bytes live in one file:
//
//	readAt, writeAt         READ, WRITE
//	setSize                 truncate both ways (SETATTR, O_TRUNC)
//	allocate                fallocate: allocate, KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE
//	extents, readContent    the data extents; a copy of them and their bytes
//	putContent              write extents and bytes (restore, remote records)
//	fillData                a data record's content: a view, or a copy
//	freeze, frozenContent   a streamed snapshot's copy on write (snapshot_stream.go)
//	dropContent             release (the file's end, truncate to 0)

// content is where a regular file's bytes live: a slot of an arena, a
// memfd of its own, or nothing yet (the file reads as attr.Size zeros).
type content struct {
	// fd is the memfd holding a large regular file's content, or -1.
	//
	// INVARIANT: fd == -1 for anything but a regular file, and when slot
	// is set.
	fd int

	// slot is the arena slot holding a small file's content (slot.a nil:
	// none).
	//
	// INVARIANT: when set, attr.Size <= slot.size() <= the class of
	// arenaMax, the slot's bytes at and past attr.Size are zero, and no
	// other inode or snapshot names the slot.
	slot slot

	// frozen says a streamed snapshot reads the content as it is: the
	// first change gives the file a copy (State.thaw, State.slotFor).
	//
	// INVARIANT: frozen implies the file has content and State.snap lists
	// the inode.
	frozen bool

	// view is the content view of the last data record emitted for fd's
	// memfd (content_view.go), or nil. While it is not released it may
	// still read the memfd: the first change to the content copies it
	// first (State.unshare), and the memfd is never emptied for reuse.
	//
	// INVARIANT: view != nil implies fd >= 0 and view reads fd's memfd.
	view *memfdView

	// allocated is what the content holds in bytes: a memfd's allocation
	// (st_blocks*512) as last measured, a slot's size.
	//
	// INVARIANT: allocated == 0 without content; the sum over all inodes
	// is State.used.
	allocated int64
}

// noContent is the content of a new inode: no bytes stored.
var noContent = content{fd: -1}

// hasContent says whether the file stores bytes (else it reads as
// attr.Size zeros).
func (c *content) hasContent() bool { return c.fd >= 0 || c.slot.a != nil }

// inArena says whether a file of size bytes without a memfd keeps its
// bytes in an arena slot.
func (c *content) inArena(size int64) bool { return c.fd < 0 && size <= arenaMax }

// readAt fills p with the file's bytes at off: zeros where it stores
// none. The caller keeps p below the file's size.
func (st *State) readAt(in *inode, p []byte, off int64) error {
	if in.slot.a != nil {
		return slotRead(in.slot, p, off)
	}
	got := 0
	if in.fd >= 0 {
		var err error
		if got, err = memfdRead(in.fd, p, off); err != nil {
			return err
		}
	}
	clear(p[got:])
	return nil
}

// writeAt writes p at off, held to the volume's capacity; the file's size
// grows to cover it. The caller checks off and len(p) against maxDataEnd.
func (st *State) writeAt(in *inode, p []byte, off int64) syscall.Errno {
	n := int64(len(p))
	if end := max(int64(in.attr.Size), off+n); in.inArena(end) {
		if e := st.growSlot(in, end); e != 0 {
			return e
		}
		if err := memfdWrite(in.slot.a.fd, p, in.slot.base()+off); err != nil {
			return errnoOf(err)
		}
		in.attr.Size = uint64(end)
		return 0
	}
	if e := st.ensureMemfd(in); e != 0 {
		return e
	}
	if e := st.reserve(in, off, n); e != 0 {
		return e
	}
	err := memfdWrite(in.fd, p, off)
	if e := st.remeasure(in); e != 0 {
		return e
	}
	return errnoOf(err)
}

// setSize truncates or extends in's content (both ways, sparse). Without
// stored bytes only the size changes, held to what a memfd would take.
func (st *State) setSize(in *inode, size uint64) syscall.Errno {
	switch {
	case size == 0:
		st.dropContent(in) // an empty file needs no storage
	case in.slot.a != nil && size <= arenaMax:
		old := int64(in.attr.Size)
		if e := st.slotFor(in, max(old, int64(size))); e != 0 {
			return e
		}
		if err := slotZero(in.slot, int64(size), old-int64(size)); err != nil {
			return errnoOf(err)
		}
	case in.hasContent():
		if e := st.ensureMemfd(in); e != 0 {
			return e
		}
		if err := memfdTruncate(in.fd, int64(size)); err != nil {
			return errnoOf(err)
		}
		return st.remeasure(in)
	case size > math.MaxInt64:
		return syscall.EINVAL // as ftruncate: a negative off_t
	}
	in.attr.Size = size
	return 0
}

// allocate applies an fallocate(2) mode to [off, off+n) and returns its
// answer: never a silent success for a mode that did nothing. The caller
// checks the range against maxDataEnd for modes that allocate. A memfd
// (tmpfs) has no FALLOC_FL_ZERO_RANGE: it is a punch, then an allocation.
func (st *State) allocate(in *inode, mode uint32, off, n int64) syscall.Errno {
	valid := off >= 0 && n > 0 && off <= math.MaxInt64-n
	if valid && in.fd < 0 {
		if e, done := st.slotAllocate(in, mode, off, n); done {
			return e
		}
	}
	allocates := mode&unix.FALLOC_FL_PUNCH_HOLE == 0
	if e := st.ensureMemfd(in); e != 0 {
		return e
	}
	if allocates && valid {
		if e := st.reserve(in, off, n); e != 0 {
			return e
		}
	}
	var err error
	if valid && mode&^unix.FALLOC_FL_KEEP_SIZE == unix.FALLOC_FL_ZERO_RANGE {
		if err = memfdFallocate(in.fd, punchMode, off, n); err == nil {
			err = memfdFallocate(in.fd, mode&unix.FALLOC_FL_KEEP_SIZE, off, n)
		}
	} else {
		err = memfdFallocate(in.fd, mode, off, n)
	}
	if e := st.remeasure(in); e != 0 {
		return e
	}
	return errnoOf(err)
}

// slotAllocate is allocate for a file without a memfd whose size stays
// within arenaMax, for the modes tmpfs supports and ZERO_RANGE; done is
// false for anything else (the file then moves to a memfd, whose
// fallocate answers). A slot is allocated whole: allocating within it
// only takes the size (KEEP_SIZE: reserves the slot up to off+n).
func (st *State) slotAllocate(in *inode, mode uint32, off, n int64) (e syscall.Errno, done bool) {
	const keep, punch, zero = unix.FALLOC_FL_KEEP_SIZE, unix.FALLOC_FL_PUNCH_HOLE, unix.FALLOC_FL_ZERO_RANGE
	size, end := int64(in.attr.Size), off+n
	newSize := size
	switch mode {
	case 0, zero:
		newSize = max(size, end)
	case keep, zero | keep:
	case punch | keep:
		if !in.hasContent() {
			return 0, true // a hole already
		}
	default:
		return 0, false
	}
	need := newSize
	if mode == keep {
		need = max(size, end)
	}
	if !in.inArena(need) {
		return 0, false
	}
	if e := st.slotFor(in, max(need, 1)); e != 0 {
		return e, true
	}
	if mode&(punch|zero) != 0 && off < size {
		if err := slotZero(in.slot, off, min(end, size)-off); err != nil {
			return errnoOf(err), true
		}
	}
	in.attr.Size = uint64(newSize)
	return 0, true
}

// extents lists the file's data extents below its size and the bytes
// they hold (a slot is one extent: a small file's holes are not worth
// finding).
func (st *State) extents(in *inode) ([]Extent, int64, error) {
	switch size := int64(in.attr.Size); {
	case in.slot.a != nil && size > 0:
		return []Extent{{Off: 0, Len: uint64(size)}}, size, nil
	case in.fd >= 0:
		return memfdExtents(in.fd, size)
	}
	return nil, 0, nil
}

// readContent copies the file's content: its data extents and their
// bytes (memfdContent's form; nil, nil without stored bytes).
func (st *State) readContent(in *inode) ([]Extent, []byte, error) {
	return in.content.copyOut(int64(in.attr.Size))
}

// copyOut copies the content's extents below size and their bytes
// (readContent; a streamed snapshot's moved content). A slot's bytes come
// whole, from offset 0 (nil extents).
func (c *content) copyOut(size int64) ([]Extent, []byte, error) {
	switch {
	case c.slot.a != nil:
		data := make([]byte, size)
		return nil, data, slotRead(c.slot, data, 0)
	case c.fd >= 0:
		return memfdContent(c.fd, size)
	}
	return nil, nil, nil
}

// putContent writes a content (extents and their bytes, as readContent
// gives it) into the file: only the extents, so holes stay holes. The
// file's size must already cover them (restore, a remote data record).
func (st *State) putContent(in *inode, exts []Extent, data []byte) syscall.Errno {
	if len(data) == 0 {
		return 0
	}
	if size := int64(in.attr.Size); in.inArena(size) {
		if e := st.slotFor(in, size); e != 0 {
			return e
		}
		if exts == nil {
			exts = []Extent{{Off: 0, Len: uint64(len(data))}}
		}
		for _, x := range exts {
			if err := memfdWrite(in.slot.a.fd, data[:x.Len], in.slot.base()+int64(x.Off)); err != nil {
				return errnoOf(err)
			}
			data = data[x.Len:]
		}
		return 0
	}
	if e := st.ensureMemfd(in); e != 0 {
		return e
	}
	err := memfdWriteContent(in.fd, exts, data)
	if e := st.remeasure(in); e != 0 {
		return e
	}
	return errnoOf(err)
}

// fillData gives a data record the file's content — for a partial record
// (r.Partial), only what lies inside r.Ranges: a slot's bytes copied now
// (at most arenaMax: about the cost of the dup a view takes), a memfd's as
// a view read off the actor (content_view.go) or, when the view cannot be
// made (out of descriptors), a copy taken now. A file without stored
// bytes leaves the record empty (its size says it all), and so does a
// partial record of no range.
func (st *State) fillData(in *inode, r *Record) syscall.Errno {
	if !in.hasContent() || (r.Partial && len(r.Ranges) == 0) {
		return 0
	}
	if in.fd < 0 {
		var err error
		if r.Partial {
			r.Extents, r.Data, err = slotRangeContent(in.slot, r.Ranges)
		} else {
			r.Extents, r.Data, err = st.readContent(in)
		}
		if err != nil {
			return errnoOf(err)
		}
		return 0
	}
	v, err := st.newView(in, r)
	if err == nil {
		r.Content = v
		return 0
	}
	// Out of descriptors: the record takes its bytes now, on the actor,
	// rather than fail the close.
	if r.Partial {
		r.Extents, r.Data, err = memfdRangeContent(in.fd, r.Ranges)
	} else {
		r.Extents, r.Data, err = st.readContent(in)
	}
	if err != nil {
		return errnoOf(err)
	}
	st.inlineContents.Add(1)
	return 0
}

// dropContent lets go of in's storage: its content becomes attr.Size
// zeros. A frozen file's storage goes to the streamed snapshot; a memfd
// a data record's view still reads is left to the view; else a slot is
// freed for reuse and a memfd kept as a spare (or closed).
func (st *State) dropContent(in *inode) {
	c := in.content
	if !c.hasContent() {
		return
	}
	st.used -= c.allocated
	in.content = noContent
	switch {
	case c.frozen:
		c.frozen, c.view = false, nil
		st.snap.moved[in.ino] = c
	case c.slot.a != nil:
		st.freeSlot(c.slot)
	case c.shared():
		memfdClose(c.fd) // the view holds the memfd through its own descriptor
	default:
		st.recycle(c.fd)
	}
}

// releaseMoved releases a content a streamed snapshot kept.
func (st *State) releaseMoved(c content) {
	if c.slot.a != nil {
		st.freeSlot(c.slot)
		return
	}
	c.closeContent()
}

// closeContent closes the content's descriptor (the state's end); a
// slot's arena is closed with the arenas.
func (c *content) closeContent() {
	if c.fd >= 0 {
		memfdClose(c.fd)
		c.fd = -1
	}
}

// slotFor gives in a slot it may change, holding need bytes (need <=
// arenaMax): the one it has when it is big enough and not frozen, else a
// new one of the class need takes (the same class for a frozen file),
// held to the capacity, with the file's bytes copied over; the old slot
// is freed, or left to the streamed snapshot.
func (st *State) slotFor(in *inode, need int64) syscall.Errno {
	old := in.slot
	if old.a != nil && old.size() >= need && !in.frozen {
		return 0
	}
	c := classFor(need)
	if old.a != nil && old.size() >= need {
		c = old.a.class
	}
	if delta := slotSizes[c] - in.allocated; delta > 0 && st.used+delta > st.capacity {
		return st.limitHit(LimitCapacity)
	}
	s, err := st.takeSlot(c)
	if err != nil {
		return st.storageErr(err)
	}
	if old.a != nil {
		if err := slotCopy(s, old, int64(in.attr.Size), st.copyBuf()); err != nil {
			st.freeSlot(s)
			return errnoOf(err)
		}
		st.dropContent(in)
	}
	in.slot, in.allocated = s, slotSizes[c]
	st.used += in.allocated
	return 0
}

// growSlot is slotFor for a write that grows the file to end: a file
// outgrowing its slot takes one with room to grow (4× its slot, at most
// arenaMax), so a file written in many small appends moves a few times,
// not at every class; fitSlot gives it the class of its size when it is
// shipped (FLUSH, FSYNC, RELEASE). Near the capacity it takes what end
// needs only.
func (st *State) growSlot(in *inode, end int64) syscall.Errno {
	if in.slot.a == nil || end <= in.slot.size() {
		return st.slotFor(in, end)
	}
	if roomy := min(arenaMax, 4*in.slot.size()); roomy > end && st.slotFor(in, roomy) == 0 {
		return 0
	}
	st.eff.Limit = LimitNone // the roomy try's capacity hit is not this op's answer
	return st.slotFor(in, end)
}

// fitSlot moves a slot file into the smallest class that holds its size
// when its slot is bigger (growSlot's room, a truncate): what is shipped
// is what it costs. A frozen file keeps its slot (the snapshot reads it).
func (st *State) fitSlot(in *inode) {
	s := in.slot
	if s.a == nil || in.frozen {
		return
	}
	c := classFor(max(int64(in.attr.Size), 1))
	if c >= s.a.class {
		return
	}
	ns, err := st.takeSlot(c)
	if err != nil {
		return // it keeps the bigger slot
	}
	if slotCopy(ns, s, int64(in.attr.Size), st.copyBuf()) != nil {
		st.freeSlot(ns)
		return
	}
	st.freeSlot(s)
	st.used += slotSizes[c] - in.allocated
	in.slot, in.allocated = ns, slotSizes[c]
}

// toMemfd moves a slot file's bytes into a memfd of its own (the file
// grows past arenaMax); the slot is freed, or left to the snapshot.
func (st *State) toMemfd(in *inode) syscall.Errno {
	fd, err := st.newMemfd()
	if err != nil {
		return st.storageErr(err)
	}
	size := int64(in.attr.Size)
	buf := st.copyBuf()[:size]
	if err = slotRead(in.slot, buf, 0); err == nil {
		err = memfdWrite(fd, buf, 0)
	}
	if err == nil {
		err = memfdTruncate(fd, size)
	}
	if err != nil {
		memfdClose(fd)
		return errnoOf(err)
	}
	st.dropContent(in)
	in.fd = fd
	return st.remeasure(in)
}

// copyBuf is the actor's buffer for moving a slot's bytes: arenaMax long.
func (st *State) copyBuf() []byte {
	if st.buf == nil {
		st.buf = make([]byte, arenaMax)
	}
	return st.buf
}

// ensureMemfd gives in a memfd of its size that may be changed: every
// change to a large file's content goes through it first. A slot file's
// bytes move to a memfd (toMemfd); a memfd a streamed snapshot still
// reads is copied first (thaw), and so is one a data record's view may
// still read (unshare).
func (st *State) ensureMemfd(in *inode) syscall.Errno {
	if in.fd >= 0 && !in.frozen && in.view == nil {
		return 0
	}
	return st.makeMemfd(in)
}

// makeMemfd is ensureMemfd's slow path.
func (st *State) makeMemfd(in *inode) syscall.Errno {
	switch {
	case in.slot.a != nil:
		return st.toMemfd(in)
	case in.frozen:
		in.view = nil // the view keeps its own descriptor on the memfd thaw moves
		return st.thaw(in)
	case in.view != nil:
		return st.unshare(in)
	}
	fd, err := st.newMemfd()
	if err != nil {
		return st.storageErr(err)
	}
	if in.attr.Size > 0 {
		if err := memfdTruncate(fd, int64(in.attr.Size)); err != nil {
			st.spare = append(st.spare, fd) // still empty
			return errnoOf(err)
		}
	}
	in.fd = fd
	return 0
}

// newMemfd returns an empty memfd, a spare one if there is.
func (st *State) newMemfd() (int, error) {
	if n := len(st.spare); n > 0 {
		fd := st.spare[n-1]
		st.spare = st.spare[:n-1]
		return fd, nil
	}
	return memfdNew()
}

// reserve checks that writing n bytes at off of a memfd fits the
// capacity: at once when every page the range spans fits, else by
// counting the holes the write would fill.
func (st *State) reserve(in *inode, off, n int64) syscall.Errno {
	span := roundUp(off+n, pageSize) - off&^(pageSize-1)
	if st.used+span <= st.capacity {
		return 0
	}
	holes, err := memfdHoleBytes(in.fd, off, n)
	if err != nil {
		return errnoOf(err)
	}
	if st.used+holes > st.capacity {
		return st.limitHit(LimitCapacity)
	}
	return 0
}

// remeasure takes the memfd's size and allocation after a change.
func (st *State) remeasure(in *inode) syscall.Errno {
	size, alloc, err := memfdStat(in.fd)
	if err != nil {
		return errnoOf(err)
	}
	in.attr.Size = uint64(size)
	st.used += alloc - in.allocated
	in.allocated = alloc
	return 0
}
