package fsactor

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// File contents live in memfds: anonymous tmpfs files, one per regular file
// that has bytes, created at the first write. These helpers are thin,
// allocation-free wrappers; their errors are raw unix errors, mapped to
// errnos by errnoOf.

const pageSize = 4096

// memfdNew creates an empty memfd (close-on-exec).
func memfdNew() (int, error) {
	fd, err := unix.MemfdCreate("spoolfs", unix.MFD_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("memfd_create: %w", err)
	}
	return fd, nil
}

// memfdClose closes fd. Errors of close(2) on a memfd mean nothing.
func memfdClose(fd int) { _ = unix.Close(fd) }

// memfdStat returns the memfd's size and its allocation in bytes.
func memfdStat(fd int) (size, allocated int64, err error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, 0, fmt.Errorf("fstat memfd: %w", err)
	}
	return st.Size, st.Blocks * 512, nil
}

// memfdWrite writes all of p at off.
func memfdWrite(fd int, p []byte, off int64) error {
	for len(p) > 0 {
		n, err := unix.Pwrite(fd, p, off)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("pwrite memfd: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("pwrite memfd: %w", syscall.EIO)
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// memfdRead fills p from off; it stops early only at the memfd's end and
// returns how many bytes it read.
func memfdRead(fd int, p []byte, off int64) (int, error) {
	total := 0
	for total < len(p) {
		n, err := unix.Pread(fd, p[total:], off+int64(total))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return total, fmt.Errorf("pread memfd: %w", err)
		}
		if n == 0 {
			break
		}
		total += n
	}
	return total, nil
}

// memfdTruncate sets the memfd's size.
func memfdTruncate(fd int, size int64) error {
	if err := unix.Ftruncate(fd, size); err != nil {
		return fmt.Errorf("ftruncate memfd to %d: %w", size, err)
	}
	return nil
}

// memfdFallocate hands mode to the memfd's own fallocate.
func memfdFallocate(fd int, mode uint32, off, length int64) error {
	if err := unix.Fallocate(fd, mode, off, length); err != nil {
		return fmt.Errorf("fallocate memfd mode %#x: %w", mode, err)
	}
	return nil
}

// memfdExtents lists the data extents of fd below size (lseek
// SEEK_DATA and SEEK_HOLE) and the bytes they hold: what lies between and
// after them is a hole that reads as zeros. tmpfs allocates pages, so the
// extents are page-aligned except where size cuts the last one.
func memfdExtents(fd int, size int64) ([]Extent, int64, error) {
	return memfdExtentsIn(fd, 0, size, nil, 0)
}

// memfdExtentsIn appends to exts the data extents of fd within [lo, hi),
// clipped to it, and adds their bytes to total.
func memfdExtentsIn(fd int, lo, hi int64, exts []Extent, total int64) ([]Extent, int64, error) {
	for pos := lo; pos < hi; {
		d, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if err == syscall.ENXIO || (err == nil && d >= hi) {
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("lseek SEEK_DATA memfd: %w", err)
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil {
			return nil, 0, fmt.Errorf("lseek SEEK_HOLE memfd: %w", err)
		}
		h = min(h, hi)
		exts = append(exts, Extent{Off: uint64(d), Len: uint64(h - d)})
		total += h - d
		pos = h
	}
	return exts, total, nil
}

// memfdContent reads the content of fd below size: its extents and their
// bytes one after another. A content that starts at offset 0 and has no
// hole before its last byte gives nil extents.
func memfdContent(fd int, size int64) ([]Extent, []byte, error) {
	exts, total, err := memfdExtents(fd, size)
	if err != nil {
		return nil, nil, err
	}
	return memfdReadExtents(fd, exts, total)
}

// memfdReadExtents reads the bytes of exts (total in all) one after
// another; one extent from offset 0 gives nil extents (the data starts
// at 0).
func memfdReadExtents(fd int, exts []Extent, total int64) ([]Extent, []byte, error) {
	data := make([]byte, total)
	pos := 0
	for _, e := range exts {
		got, err := memfdRead(fd, data[pos:pos+int(e.Len)], int64(e.Off))
		if err != nil {
			return nil, nil, err
		}
		clear(data[pos+got : pos+int(e.Len)])
		pos += int(e.Len)
	}
	if len(exts) == 1 && exts[0].Off == 0 {
		exts = nil
	}
	return exts, data, nil
}

// memfdWriteContent writes a content (extents and their bytes, as
// memfdContent reads it) into fd: only the extents, so holes stay holes.
func memfdWriteContent(fd int, exts []Extent, data []byte) error {
	if exts == nil {
		return memfdWrite(fd, data, 0)
	}
	for _, e := range exts {
		if err := memfdWrite(fd, data[:e.Len], int64(e.Off)); err != nil {
			return err
		}
		data = data[e.Len:]
	}
	return nil
}

// memfdHoleBytes returns how many bytes of the pages spanning
// [off, off+n) are not allocated yet: an upper bound of what writing the
// range allocates.
func memfdHoleBytes(fd int, off, n int64) (int64, error) {
	start, end := off&^(pageSize-1), roundUp(off+n, pageSize)
	var holes int64
	for pos := start; pos < end; {
		h, err := unix.Seek(fd, pos, unix.SEEK_HOLE)
		if err == syscall.ENXIO {
			h = pos // pos is at or past the end of the file: all hole
		} else if err != nil {
			return 0, fmt.Errorf("lseek SEEK_HOLE memfd: %w", err)
		}
		if h >= end {
			break
		}
		d, err := unix.Seek(fd, h, unix.SEEK_DATA)
		if err == syscall.ENXIO {
			d = end // a hole up to the end of the file, and past it
		} else if err != nil {
			return 0, fmt.Errorf("lseek SEEK_DATA memfd: %w", err)
		}
		d = min(d, end)
		holes += d - h
		pos = d
	}
	return holes, nil
}

// roundUp rounds n up to a multiple of m (a power of two).
func roundUp(n, m int64) int64 { return (n + m - 1) &^ (m - 1) }
