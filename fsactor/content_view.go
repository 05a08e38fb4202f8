package fsactor

import (
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Data records without a copy on the actor.
//
// A FLUSH, FSYNC or RELEASE of a dirty file emits a data record that must
// carry the file's content — since issue 13 only inside the ranges changed
// since its previous data record (dirty.go), which may still be the whole
// of a large file. Reading it on the actor (a SEEK_DATA
// walk and a read of every byte into a new slice) stopped every other
// FUSE request for as long as the file took to copy: about 20 ms for
// 64 MiB (docs/benchmarks.md). Instead the record carries a memfdView
// (Record.Content): a descriptor of its own on the file's memfd (dup(2),
// one system call), the size at that LSN and the record's ranges (the
// view reads inside them only). Replication reads it on its
// own goroutine and releases it. Should the dup fail (the process out of
// descriptors: each file's memfd holds one), the record takes its bytes on
// the actor as before, rather than fail the close (InlineContents).
//
// Copy on write keeps the view true to its LSN: while a view may still
// read the memfd (inode.view set and not released), the first change to
// the file's content — write, truncate, fallocate, the file's end — gives
// the file a copy first (unshare) and leaves the old memfd to the view.
// Those copies are counted (State.ContentCopies). A view released before
// the next change costs nothing more: the file is changed in place.
//
// Ownership: every holder of a memfd owns a descriptor of its own — the
// inode (inode.fd), a streamed snapshot (snapSession.moved), each view
// (memfdView.fd) — and the kernel keeps the memfd until the last one is
// closed. A view's descriptor is closed by Release, on whatever goroutine
// calls it: that number is the view's alone (the actor never uses it), so
// closing it off the actor cannot close anything the actor holds.

// memfdView is a data record's content: file content at one LSN, read off
// the actor. It implements volume.Content.
type memfdView struct {
	// fd is the view's own descriptor on the memfd (close-on-exec).
	// INVARIANT: open until Release; the actor never reads, writes or
	// closes it.
	fd int
	// size is the file's size at the record's LSN: the view reads the
	// extents below it.
	size int64
	// partial says the view reads only inside ranges (a partial data
	// record's: Record.Ranges, which the record owns and nobody changes).
	partial bool
	ranges  []Extent
	// released is set by Release once the view reads no more: the actor
	// may change the memfd in place again.
	released atomic.Bool
	once     sync.Once
}

// dupFD duplicates a descriptor (close-on-exec); tests replace it to
// make it fail.
var dupFD = func(fd int) (int, error) { return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0) }

// newView gives in's memfd a view for data record r (on the actor: one
// dup, no read of the content), reading inside r's ranges when it is
// partial.
func (st *State) newView(in *inode, r *Record) (*memfdView, error) {
	fd, err := dupFD(in.fd)
	if err != nil {
		return nil, fmt.Errorf("dup memfd: %w", err)
	}
	v := &memfdView{fd: fd, size: int64(in.attr.Size), partial: r.Partial, ranges: r.Ranges}
	in.view = v
	return v, nil
}

// Read implements volume.Content: the extents below the size and their
// bytes, as the file was at the record's LSN.
func (v *memfdView) Read() ([]Extent, []byte, error) {
	if v.released.Load() {
		return nil, nil, fmt.Errorf("fsactor: content view read after its release: %w", syscall.EBADF)
	}
	if v.partial {
		return memfdRangeContent(v.fd, v.ranges)
	}
	return memfdContent(v.fd, v.size)
}

// Release implements volume.Content: it closes the view's descriptor
// (once; later calls do nothing).
func (v *memfdView) Release() {
	v.once.Do(func() {
		memfdClose(v.fd)
		v.released.Store(true)
	})
}

// shared says whether a data record's view may still read in's memfd:
// then its content must not change in place (unshare) nor the memfd be
// reused (dropContent).
func (c *content) shared() bool {
	return c.view != nil && !c.view.released.Load()
}

// unshare gives in a memfd of its own before its content changes: a copy
// of the one a live view reads (counted in ContentCopies), or the same
// one once the view is released.
func (st *State) unshare(in *inode) syscall.Errno {
	if !in.shared() {
		in.view = nil
		return 0
	}
	fd, err := st.newMemfd()
	if err != nil {
		return st.storageErr(err)
	}
	if err := memfdCopy(fd, in.fd, int64(in.attr.Size)); err != nil {
		st.recycle(fd)
		return errnoOf(err)
	}
	st.contentCopies.Add(1)
	memfdClose(in.fd) // the view keeps the memfd through its own descriptor
	in.fd, in.view = fd, nil
	st.used -= in.allocated
	in.allocated = 0
	return st.remeasure(in)
}

// recycle keeps an emptied memfd for reuse, or closes it.
func (st *State) recycle(fd int) {
	if len(st.spare) < maxSpare && memfdTruncate(fd, 0) == nil {
		st.spare = append(st.spare, fd)
		return
	}
	memfdClose(fd)
}

// ContentCopies counts the copies a file's content took because it
// changed while a data record's view could still read it (unshare). Safe
// from any goroutine.
func (st *State) ContentCopies() uint64 { return st.contentCopies.Load() }

// InlineContents counts the data records whose content the actor read
// itself because it could not dup the memfd for a view (out of
// descriptors): the close still succeeds, at the old cost. Safe from any
// goroutine.
func (st *State) InlineContents() uint64 { return st.inlineContents.Load() }

// memfdCopy copies the extents of src below size into dst, and gives dst
// size bytes: holes stay holes (a sparse file is not filled with zeros).
// Each extent goes by copy_file_range (in the kernel, no bounce through
// user space), or by read and write where that is refused.
func memfdCopy(dst, src int, size int64) error {
	exts, _, err := memfdExtents(src, size)
	if err != nil {
		return err
	}
	var buf []byte
	for _, e := range exts {
		off, end := int64(e.Off), int64(e.Off+e.Len)
		if off, err = copyRange(dst, src, off, end); err != nil {
			return err
		}
		for off < end {
			if buf == nil {
				buf = make([]byte, 1<<20)
			}
			n := min(int64(len(buf)), end-off)
			got, err := memfdRead(src, buf[:n], off)
			if err != nil {
				return err
			}
			if got == 0 {
				break
			}
			if err := memfdWrite(dst, buf[:got], off); err != nil {
				return err
			}
			off += int64(got)
		}
	}
	return memfdTruncate(dst, size)
}

// copyRange copies [off, end) of src to the same place in dst with
// copy_file_range and returns where it stopped: end, or earlier when the
// kernel refuses the call for these files (the caller copies the rest).
func copyRange(dst, src int, off, end int64) (int64, error) {
	for off < end {
		in, out := off, off
		n, err := unix.CopyFileRange(src, &in, dst, &out, int(min(end-off, 1<<30)), 0)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EXDEV || err == syscall.EINVAL || err == syscall.ENOSYS || err == syscall.EOPNOTSUPP:
			return off, nil
		case err != nil:
			return off, fmt.Errorf("copy_file_range memfd: %w", err)
		case n == 0:
			return off, nil
		}
		off += int64(n)
	}
	return off, nil
}
