package fsactor

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// Dirty ranges: what a data record carries.
//
// A file's data record (FLUSH, FSYNC, RELEASE) carries only the byte
// ranges of the file written, punched or zeroed since its previous data
// record (Record.Partial, Record.Ranges): one byte written at 2 GiB ships
// one byte, a 1 MiB append to a 256 MiB file ships 1 MiB. The inode keeps
// those ranges (inode.dirtyRanges): a small sorted set, merged as ranges
// touch, bounded by maxDirtyRanges (past it the two ranges closest to each
// other merge, so the set stays exact and only ships the bytes of the gap
// between them). copy_file_range into a file arrives as WRITEs (the
// actor does not implement FUSE's COPY_FILE_RANGE; the kernel falls back).
//
// Why a partial record is exact: a receiver applying it sets the bytes
// inside the ranges, leaves the others and takes the record's size. It
// holds the file as of the previous record (records apply in LSN order; a
// snapshot is the content at its LSN, which includes every change up to
// it), so the bytes outside the ranges already equal the actor's — but
// for size changes, which all travel as setattr records (SETATTR with a
// size, O_TRUNC), and a write or fallocate past the end, whose growth the
// record's size gives (zeros on both sides). A truncate cuts the ranges
// past the new size (clampDirty): the setattr record cuts the receiver's
// bytes there too.
//
// Allocation: the set is the inode's slice, handed to the data record
// (takeDirty) and started afresh at the next write: one allocation per
// data record, none per WRITE while the file is dirty (alloc_test.go).

// maxDirtyRanges bounds an inode's dirty ranges (about 1 KiB of them).
const maxDirtyRanges = 64

// addDirty notes that [off, off+n) of in changed, within its size.
func (in *inode) addDirty(off, n int64) {
	end := min(uint64(off)+uint64(n), in.attr.Size)
	if n <= 0 || off < 0 || uint64(off) >= end {
		return
	}
	in.dirtyRanges = addRange(in.dirtyRanges, uint64(off), end)
	if len(in.dirtyRanges) > maxDirtyRanges {
		in.dirtyRanges = mergeClosest(in.dirtyRanges)
	}
}

// addRange adds [off, end) to the sorted, merged set rs, merging the
// ranges it overlaps or touches. Appends (the common case) are checked
// first; no closure, no allocation beyond the slice's growth.
func addRange(rs []Extent, off, end uint64) []Extent {
	n := len(rs)
	if n == 0 || rs[n-1].Off+rs[n-1].Len < off {
		return append(rs, Extent{Off: off, Len: end - off})
	}
	lo, hi := 0, n // first range whose end reaches off
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if rs[m].Off+rs[m].Len < off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	i, j := lo, lo
	for j < n && rs[j].Off <= end {
		off, end = min(off, rs[j].Off), max(end, rs[j].Off+rs[j].Len)
		j++
	}
	if i == j { // no range met: insert
		rs = append(rs, Extent{})
		copy(rs[i+1:], rs[i:])
		rs[i] = Extent{Off: off, Len: end - off}
		return rs
	}
	rs[i] = Extent{Off: off, Len: end - off}
	return append(rs[:i+1], rs[j:]...)
}

// mergeClosest merges the two neighbouring ranges with the smallest gap.
func mergeClosest(rs []Extent) []Extent {
	best := 0
	for k := 1; k+1 < len(rs); k++ {
		if rs[k+1].Off-(rs[k].Off+rs[k].Len) < rs[best+1].Off-(rs[best].Off+rs[best].Len) {
			best = k
		}
	}
	rs[best].Len = rs[best+1].Off + rs[best+1].Len - rs[best].Off
	return append(rs[:best+1], rs[best+2:]...)
}

// clampDirty drops what the dirty ranges hold at or past size (a
// truncate: its setattr record cuts the receiver there too).
func (in *inode) clampDirty(size uint64) {
	rs := in.dirtyRanges
	for len(rs) > 0 && rs[len(rs)-1].Off >= size {
		rs = rs[:len(rs)-1]
	}
	if n := len(rs); n > 0 && rs[n-1].Off+rs[n-1].Len > size {
		rs[n-1].Len = size - rs[n-1].Off
	}
	in.dirtyRanges = rs
}

// takeDirty hands the dirty ranges, within the size, to a data record
// (never nil: a partial record of no range still says so) and starts the
// set afresh.
func (in *inode) takeDirty() []Extent {
	in.clampDirty(in.attr.Size)
	rs := in.dirtyRanges
	in.dirtyRanges = nil
	if rs == nil {
		rs = []Extent{}
	}
	return rs
}

// dirtyRangesErr checks the dirty ranges' invariant.
func (in *inode) dirtyRangesErr() error {
	rs := in.dirtyRanges
	switch {
	case len(rs) == 0:
		return nil
	case !in.isReg() || !in.dirty:
		return fmt.Errorf("dirty ranges on a %#o (dirty %v)", in.fileType(), in.dirty)
	case len(rs) > maxDirtyRanges:
		return fmt.Errorf("%d dirty ranges, more than %d", len(rs), maxDirtyRanges)
	}
	var end uint64
	for i, g := range rs {
		if g.Len == 0 || (i > 0 && g.Off <= end) || g.Off+g.Len > in.attr.Size {
			return fmt.Errorf("dirty range %d [%d, +%d) empty, unsorted, touching the one before or past size %d", i, g.Off, g.Len, in.attr.Size)
		}
		end = g.Off + g.Len
	}
	return nil
}

// memfdRangeContent reads the data of fd inside ranges (sorted, below
// size): the runs that are not holes, clipped to the ranges, and their
// bytes (lseek SEEK_DATA/SEEK_HOLE from each range's start, so a sparse
// file is walked only where it changed). As memfdContent, one extent
// from offset 0 gives nil extents (the data starts at 0).
func memfdRangeContent(fd int, ranges []Extent) ([]Extent, []byte, error) {
	var exts []Extent
	var total int64
	for _, g := range ranges {
		var err error
		exts, total, err = memfdExtentsIn(fd, int64(g.Off), int64(g.Off+g.Len), exts, total)
		if err != nil {
			return nil, nil, err
		}
	}
	return memfdReadExtents(fd, exts, total)
}

// patchContent applies a partial data record's content (checked): the
// file takes size first (a shrink cuts, a growth reads as zeros), then
// each range is punched to zeros and the data put where the extents
// place it; bytes outside the ranges stay (dirty.go says why that is
// exact).
func (st *State) patchContent(in *inode, size uint64, ranges, exts []Extent, data []byte) syscall.Errno {
	if e := st.setSize(in, size); e != 0 {
		return e
	}
	for _, g := range ranges {
		if !in.hasContent() {
			break // the file is all zeros: nothing to punch
		}
		if e := st.allocate(in, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(g.Off), int64(g.Len)); e != 0 {
			return e
		}
	}
	return st.putContent(in, exts, data)
}

// checkRanges checks a data record's ranges: none unless partial; sorted,
// not empty, neither overlapping nor touching, within the size, every
// extent inside one.
func checkRanges(r *Record) error {
	if !r.Partial {
		if r.Ranges != nil {
			return fmt.Errorf("ranges on a whole data record")
		}
		return nil
	}
	var end uint64
	for i, g := range r.Ranges {
		if g.Len == 0 || (i > 0 && g.Off <= end) || g.Off > r.Attr.Size || g.Len > r.Attr.Size-g.Off {
			return fmt.Errorf("range [%d, +%d) empty, out of order or beyond size %d", g.Off, g.Len, r.Attr.Size)
		}
		end = g.Off + g.Len
	}
	exts := r.Extents
	if exts == nil && len(r.Data) > 0 {
		exts = []Extent{{Off: 0, Len: uint64(len(r.Data))}}
	}
	j := 0
	for _, e := range exts {
		for j < len(r.Ranges) && r.Ranges[j].Off+r.Ranges[j].Len <= e.Off {
			j++
		}
		if j == len(r.Ranges) || e.Off < r.Ranges[j].Off || e.Off+e.Len > r.Ranges[j].Off+r.Ranges[j].Len {
			return fmt.Errorf("extent [%d, +%d) outside the record's ranges", e.Off, e.Len)
		}
	}
	return nil
}
