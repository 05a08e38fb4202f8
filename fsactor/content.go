package fsactor

import (
	"math"
	"syscall"

	"golang.org/x/sys/unix"
)

// A regular file's content: the one place fsactor touches a file's bytes.
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

// content is where a regular file's bytes live: a memfd of its own, or
// nothing yet (the file reads as attr.Size zeros).
type content struct {
	// fd is the memfd holding a regular file's content, or -1 (no bytes
	// stored yet: the file reads as attr.Size zeros).
	//
	// INVARIANT: fd == -1 for anything but a regular file.
	fd int

	// frozen says a streamed snapshot reads the memfd's content as it is:
	// the first change gives the file a copy (State.thaw).
	//
	// INVARIANT: frozen implies fd >= 0 and State.snap lists the inode.
	frozen bool

	// view is the content view of the last data record emitted for fd's
	// memfd (content_view.go), or nil. While it is not released it may
	// still read the memfd: the first change to the content copies it
	// first (State.unshare), and the memfd is never emptied for reuse.
	//
	// INVARIANT: view != nil implies fd >= 0 and view reads fd's memfd.
	view *memfdView

	// allocated is the memfd's allocation in bytes (st_blocks*512) as last
	// measured.
	//
	// INVARIANT: allocated == 0 when fd == -1; the sum over all inodes is
	// State.used.
	allocated int64
}

// noContent is the content of a new inode: no bytes stored.
var noContent = content{fd: -1}

// hasContent says whether the file stores bytes (else it reads as
// attr.Size zeros).
func (c *content) hasContent() bool { return c.fd >= 0 }

// readAt fills p with the file's bytes at off: zeros where it stores
// none. The caller keeps p below the file's size.
func (st *State) readAt(in *inode, p []byte, off int64) error {
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
	case size == 0 && in.fd >= 0:
		st.dropContent(in) // an empty file needs no descriptor
	case in.fd >= 0:
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
// checks the range against maxDataEnd for modes that allocate.
func (st *State) allocate(in *inode, mode uint32, off, n int64) syscall.Errno {
	allocates := mode&unix.FALLOC_FL_PUNCH_HOLE == 0
	if e := st.ensureMemfd(in); e != 0 {
		return e
	}
	if allocates && off >= 0 && n > 0 && off <= math.MaxInt64-n {
		if e := st.reserve(in, off, n); e != 0 {
			return e
		}
	}
	err := memfdFallocate(in.fd, mode, off, n)
	if e := st.remeasure(in); e != 0 {
		return e
	}
	return errnoOf(err)
}

// extents lists the file's data extents below its size and the bytes
// they hold.
func (st *State) extents(in *inode) ([]Extent, int64, error) {
	if in.fd < 0 {
		return nil, 0, nil
	}
	return memfdExtents(in.fd, int64(in.attr.Size))
}

// readContent copies the file's content: its data extents and their
// bytes (memfdContent's form; nil, nil without stored bytes).
func (st *State) readContent(in *inode) ([]Extent, []byte, error) {
	return in.content.copyOut(int64(in.attr.Size))
}

// copyOut copies the content's extents below size and their bytes
// (readContent; a streamed snapshot's moved content).
func (c *content) copyOut(size int64) ([]Extent, []byte, error) {
	if c.fd < 0 {
		return nil, nil, nil
	}
	return memfdContent(c.fd, size)
}

// putContent writes a content (extents and their bytes, as readContent
// gives it) into the file: only the extents, so holes stay holes. The
// file's size must already cover them (restore, a remote data record).
func (st *State) putContent(in *inode, exts []Extent, data []byte) syscall.Errno {
	if len(data) == 0 {
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
// (r.Partial), only what lies inside r.Ranges: a view read off the actor
// (content_view.go) or, when the view cannot be made (out of descriptors),
// a copy taken now. A file without stored bytes leaves the record empty
// (its size says it all), and so does a partial record of no range.
func (st *State) fillData(in *inode, r *Record) syscall.Errno {
	if in.fd < 0 || (r.Partial && len(r.Ranges) == 0) {
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

// dropContent empties in's memfd and keeps it for reuse (or closes it):
// its content becomes attr.Size zeros. A memfd that a streamed snapshot
// or a data record's view still reads is left to them.
func (st *State) dropContent(in *inode) {
	if in.fd < 0 {
		return
	}
	shared := in.shared()
	in.view = nil
	switch {
	case in.frozen:
		st.moveToSnapshot(in)
		return
	case shared:
		memfdClose(in.fd) // the view holds the memfd through its own descriptor
	default:
		st.recycle(in.fd)
	}
	in.fd = -1
	st.used -= in.allocated
	in.allocated = 0
}

// closeContent closes the content's descriptor (the state's end, a
// streamed snapshot's end for the contents it kept).
func (c *content) closeContent() {
	if c.fd >= 0 {
		memfdClose(c.fd)
		c.fd = -1
	}
}

// ensureMemfd gives in a memfd of its size that may be changed: every
// change to a file's content goes through it first. A memfd a streamed
// snapshot still reads is copied first (thaw), and so is one a data
// record's view may still read (unshare).
func (st *State) ensureMemfd(in *inode) syscall.Errno {
	if in.fd >= 0 && !in.frozen && in.view == nil {
		return 0
	}
	return st.makeMemfd(in)
}

// makeMemfd is ensureMemfd's slow path.
func (st *State) makeMemfd(in *inode) syscall.Errno {
	switch {
	case in.frozen:
		in.view = nil // the view keeps its own descriptor on the memfd thaw moves
		return st.thaw(in)
	case in.view != nil:
		return st.unshare(in)
	}
	fd, err := st.newMemfd()
	if err != nil {
		return errnoOf(err)
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

// reserve checks that writing n bytes at off fits the capacity: at once
// when every page the range spans fits, else by counting the holes the
// write would fill.
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
		return syscall.ENOSPC
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
