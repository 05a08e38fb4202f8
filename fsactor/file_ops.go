package fsactor

import (
	"math"
	"syscall"
	"time"

	"github.com/jacobsa/fuse/fuseops"
	"golang.org/x/sys/unix"
)

// getFile returns the regular file ino: ENOENT, EISDIR, or EINVAL for
// other kinds.
func (st *State) getFile(ino uint64) (*inode, syscall.Errno) {
	in, e := st.getInode(ino)
	switch {
	case e != 0:
		return nil, e
	case in.isDir():
		return nil, syscall.EISDIR
	case !in.isReg():
		return nil, syscall.EINVAL
	}
	return in, 0
}

// openFile answers OPEN. The primary is the only writer of its volume, so
// the kernel keeps its page cache across opens. O_TRUNC arrives here only
// with atomic_o_trunc (otherwise the kernel strips it and sends a SETATTR
// after the open); it truncates like that SETATTR would.
func (st *State) openFile(o *fuseops.OpenFileOp, now time.Time) (uint64, syscall.Errno) {
	in, e := st.getInode(uint64(o.Inode))
	if e != 0 {
		return 0, e
	}
	if in.isDir() {
		return 0, syscall.EISDIR
	}
	flags := uint32(o.OpenFlags)
	trunc := flags&syscall.O_TRUNC != 0 && in.isReg()
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || trunc {
		if e := st.writable(); e != 0 {
			return 0, e
		}
	}
	var lsn uint64
	if trunc {
		st.setSize(in, 0) // to 0 cannot fail
		in.clampDirty(0)
		in.touchM(now.UnixNano())
		in.dirty = true
		if inVolume(in) {
			lsn = st.emit(in, &Record{Op: RecSetattr, Ino: in.ino, Attr: in.attr})
		}
	}
	o.Handle = st.newHandle(in, flags, false)
	o.KeepPageCache = true
	return st.mutationWait(lsn), 0
}

// readFile answers READ: pread from the memfd, zeros where the file has
// none, never past the size. Reads leave atime alone (noatime: the kernel
// keeps its own view).
func (st *State) readFile(o *fuseops.ReadFileOp) syscall.Errno {
	in, e := st.getFile(uint64(o.Inode))
	if e != 0 {
		return e
	}
	if o.Offset < 0 {
		return syscall.EINVAL
	}
	size := int64(in.attr.Size)
	if o.Offset >= size {
		o.BytesRead = 0
		return 0
	}
	dst := o.Dst
	if dst == nil { // reads larger than jacobsa's buffer: never past the size
		dst = make([]byte, max(0, min(o.Size, size-o.Offset)))
	}
	n := int(min(int64(len(dst)), size-o.Offset))
	if err := st.readAt(in, dst[:n], o.Offset); err != nil {
		return errnoOf(err)
	}
	if o.Dst == nil {
		o.Data = [][]byte{dst[:n]}
	}
	o.BytesRead = n
	return 0
}

// writeFile answers WRITE: pwrite into the memfd (created at the first
// write), held to the volume's capacity.
func (st *State) writeFile(o *fuseops.WriteFileOp, now time.Time) (uint64, syscall.Errno) {
	if e := st.writable(); e != 0 {
		return 0, e
	}
	in, e := st.getFile(uint64(o.Inode))
	if e != 0 {
		return 0, e
	}
	off, n := o.Offset, int64(len(o.Data))
	if h, ok := st.handles[uint64(o.Handle)]; ok && h.flags&syscall.O_APPEND != 0 && !st.writeback {
		off = int64(in.attr.Size)
	}
	switch {
	case off < 0:
		return 0, syscall.EINVAL
	case n == 0:
		return 0, 0
	case off > maxDataEnd-n:
		return 0, syscall.EFBIG
	}
	if e := st.writeAt(in, o.Data, off); e != 0 {
		return 0, e
	}
	in.touchM(now.UnixNano())
	in.dirty = true
	in.addDirty(off, n)
	return 0, 0
}

// fallocate hands the mode to the memfd's own fallocate and returns its
// answer: never a silent success for a mode that did nothing.
func (st *State) fallocate(o *fuseops.FallocateOp, now time.Time) (uint64, syscall.Errno) {
	if e := st.writable(); e != 0 {
		return 0, e
	}
	in, e := st.getFile(uint64(o.Inode))
	if e != 0 {
		return 0, e
	}
	off, n := int64(o.Offset), int64(o.Length)
	allocates := o.Mode&unix.FALLOC_FL_PUNCH_HOLE == 0
	if allocates && off >= 0 && n > 0 && off <= math.MaxInt64-n && off+n > maxDataEnd {
		return 0, syscall.EFBIG
	}
	if e := st.allocate(in, o.Mode, off, n); e != 0 {
		return 0, e
	}
	in.touchM(now.UnixNano())
	in.dirty = true
	if o.Mode&^unix.FALLOC_FL_KEEP_SIZE != 0 { // punch, zero: the bytes change
		in.addDirty(off, n)
	} // allocating changes no byte, and a growth is the record's size
	return 0, 0
}

// flush answers FLUSH and FSYNC: a dirty file with a name ships what
// changed since its last data record (shipData), and the reply waits
// until the file's last record is durable — the content just shipped and,
// records being durable in order, every change made before it. A clean file waits for its last record only, not
// for what other files changed since (docs/architecture.md, "What close
// waits for"). An unlinked file ships nothing. On a fenced volume a dirty
// file cannot be made durable: EIO.
func (st *State) flush(ino uint64) (uint64, syscall.Errno) {
	in, e := st.getInode(ino)
	if e != 0 {
		return 0, e
	}
	if in.dirty && in.attr.Nlink > 0 {
		if st.readOnly {
			return 0, syscall.EIO
		}
		if e := st.shipData(in); e != 0 {
			return 0, e
		}
	}
	return in.lastLSN, 0
}

// shipData emits a data record with what changed in in since its last
// one and marks it clean: a partial record (dirty.go) of the file's dirty
// ranges and its size. The actor reads none of the content: the record
// carries a view of the memfd as it is now (Record.Content,
// content_view.go), which the sink reads off the actor into the data
// extents inside the ranges and their bytes (holes left out, so a sparse
// file costs what was written). A file without a memfd has no content to
// carry (its size says it all), and with Config.DiscardContent (--local:
// the sink keeps nothing) the record gets neither ranges nor a view:
// nobody would read them.
func (st *State) shipData(in *inode) syscall.Errno {
	st.fitSlot(in)
	r := &Record{Op: RecData, Ino: in.ino, Attr: in.attr}
	if st.discard {
		in.dirtyRanges = in.dirtyRanges[:0]
	} else {
		r.Partial, r.Ranges = true, in.takeDirty()
		if e := st.fillData(in, r); e != 0 {
			in.dirtyRanges = r.Ranges // kept for the next try
			return e
		}
	}
	st.emit(in, r)
	in.dirty = false
	return 0
}
