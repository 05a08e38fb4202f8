package fsactor

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// Restoring slot files with few large writes.
//
// A restore of 1,000,000 files of 1 KiB made a pwrite per file (a quarter
// of the restore's CPU). But a fresh state hands out each class's slots in
// order (takeSlot: no slot freed yet), so the files of one class land one
// after another in their arena: restoreWriter gathers them per class and
// writes each run with one pwritev (up to restoreIov buffers).
//
// A run grows only by the same slot (a file's next extent) or the next
// slot of the same arena, at or after the run's end, and less than a page
// after it. The gap between is then the tail of the previous slot past
// its file's bytes, or a hole inside the current slot: bytes that read as
// zeros whatever happens (a slot's bytes past the size are zero, and a
// slot file's holes are zero bytes of its slot), and are written as zeros
// from zeroBlock. Less than a page of gap can never cover a whole page,
// so no page is allocated that the restore would otherwise leave sparse.
// Anything else (a new arena, a slot out of order) writes the run first.

// restoreIov bounds the buffers of one pwritev (IOV_MAX is 1024: data
// and gaps, two per extent at most).
const restoreIov = 1024

// restoreRun is the pending write of one class: bufs go to a's memfd at
// off, one after another, up to end.
type restoreRun struct {
	a        *arena
	idx      int32 // the slot of the last buffer
	off, end int64
	bufs     [][]byte
}

// restoreWriter gathers the restore's slot writes, a run per class.
type restoreWriter struct {
	runs [len(slotSizes)]restoreRun
}

// add writes p at off within slot s (off+len(p) <= s.size()), now or with
// the rest of its run.
func (w *restoreWriter) add(s slot, off int64, p []byte) error {
	r := &w.runs[s.a.class]
	at := s.base() + off
	joins := r.a == s.a && (s.idx == r.idx || s.idx == r.idx+1) && at >= r.end && at-r.end < pageSize &&
		len(r.bufs)+2 <= restoreIov
	if !joins {
		if err := r.flush(); err != nil {
			return err
		}
		r.a, r.off, r.end = s.a, at, at
	}
	if gap := at - r.end; gap > 0 {
		r.bufs = append(r.bufs, zeroBlock[:gap])
	}
	r.bufs = append(r.bufs, p)
	r.idx, r.end = s.idx, at+int64(len(p))
	return nil
}

// flush writes every pending run.
func (w *restoreWriter) flush() error {
	for c := range w.runs {
		if err := w.runs[c].flush(); err != nil {
			return err
		}
	}
	return nil
}

// flush writes the run and empties it (its buffers are the snapshot's:
// not held once written).
func (r *restoreRun) flush() error {
	if len(r.bufs) == 0 {
		return nil
	}
	err := pwritevAll(r.a.fd, r.bufs, r.off)
	clear(r.bufs)
	r.bufs, r.a = r.bufs[:0], nil
	return err
}

// pwritevAll writes bufs one after another at off, through short writes.
func pwritevAll(fd int, bufs [][]byte, off int64) error {
	for len(bufs) > 0 {
		n, err := unix.Pwritev(fd, bufs, off)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("pwritev arena: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("pwritev arena: %w", syscall.EIO)
		}
		off += int64(n)
		for n > 0 {
			if n < len(bufs[0]) {
				bufs[0] = bufs[0][n:]
				break
			}
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
		for len(bufs) > 0 && len(bufs[0]) == 0 {
			bufs = bufs[1:]
		}
	}
	return nil
}
