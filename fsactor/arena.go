package fsactor

import (
	"fmt"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"
)

// Memfd arenas: small files share descriptors.
//
// A memfd per file costs a descriptor per file (the process's open-file
// limit, 20,000 on these machines, capped the volume at about 10,000 queued
// messages, each -D and -H) and a 4 KiB page for a 1 KiB file. A file
// whose size is at most arenaMax instead lives in a slot of an arena: a
// sparse memfd of arenaBytes cut into slots of one size class. Classes are
// spaced by 1.5× from 256 B to 64 KiB, so a slot wastes at most a third of
// itself (an eighth on average) and sub-page classes share pages: a 1 KiB
// file costs 1 KiB. Descriptors grow with the arenas (one per 64 MiB of
// a class in use) and the large files, not with the files.
//
// Size classes rather than an extent allocator over one big memfd: a slot
// is found in O(1) (a class's free list, else the next unused slot of its
// last arena), a file's slot is one pointer and an index (no extent tree
// per arena, no coalescing), and freed slots are reused whole, LIFO, so
// memory freed by a spool's deletes is the first reused. The price is the
// rounding up to the class and moving a growing file to a bigger class (a
// copy of at most 64 KiB).
//
// A file grows out of its class into the next one that holds its size,
// and above arenaMax into a memfd of its own (memfd files never move back:
// a large file truncated small usually grows again, and truncate to 0
// frees its memfd anyway). Bytes of a slot at or past the file's size are
// zero (truncating down zeroes them), so growing within the slot reads
// zeros. A freed slot is punched (FALLOC_FL_PUNCH_HOLE): its whole pages
// go back to the kernel at once, sub-page slots are zeroed; an arena whose
// last slot goes is punched whole.
//
// Accounting: a slot file's allocated bytes are its class's slot size
// (what statfs counts as used and --capacity holds), whatever the pages
// under it; pages of free slots not yet reused are not counted (they are
// bounded by the LIFO reuse and the punches).
//
// Copy on write: a slot file's data record copies its bytes on the actor
// (at most 64 KiB, about as cheap as the dup a view takes), so only memfd
// files carry views. A streamed snapshot freezes slot files as memfd files:
// the first change gives the file a new slot and leaves the old one to the
// snapshot, freed when it ends.

// slotSizes are the size classes of the arenas, in bytes.
var slotSizes = [...]int64{
	256, 384, 512, 768, 1 << 10, 1536, 2 << 10, 3 << 10, 4 << 10, 6 << 10,
	8 << 10, 12 << 10, 16 << 10, 24 << 10, 32 << 10, 48 << 10, 64 << 10,
}

const (
	// arenaMax is the largest size a file in an arena has: above, a memfd
	// of its own.
	arenaMax = 64 << 10
	// arenaBytes is the size of one arena's memfd (sparse: pages are
	// allocated as slots are written).
	arenaBytes = 64 << 20
)

// arena is one memfd cut into slots of one class.
type arena struct {
	fd    int
	class uint8
	// next is the number of slots handed out at least once: slots at and
	// past it are untouched.
	// INVARIANT: inUse == the slots named by inodes and the streamed
	// snapshot; next <= arenaBytes/slotSizes[class].
	next  int32
	inUse int32
	// leaked counts slots that could not be zeroed when freed: never
	// handed out again. INVARIANT: inUse + leaked + free slots <= next.
	leaked int32
}

// slot names one slot of an arena; a nil arena is no slot.
type slot struct {
	a   *arena
	idx int32
}

// size is the slot's capacity; base its offset in the arena's memfd.
func (s slot) size() int64 { return slotSizes[s.a.class] }
func (s slot) base() int64 { return int64(s.idx) * slotSizes[s.a.class] }

// arenas holds the arenas of one volume, by class.
type arenas struct {
	// classes[c] are the arenas of class c; the last is the one new
	// slots are cut from.
	classes [len(slotSizes)][]*arena
	// free[c] are the freed slots of class c, reused last freed first.
	// INVARIANT: a free slot is named by no inode and no snapshot, and
	// its bytes are zero.
	free [len(slotSizes)][]slot
	// count is the number of arenas (descriptors held).
	count int
}

// classFor returns the smallest class holding n bytes (n <= arenaMax).
func classFor(n int64) uint8 {
	for c, s := range slotSizes {
		if n <= s {
			return uint8(c)
		}
	}
	panic(fmt.Sprintf("fsactor: no arena class holds %d bytes", n))
}

// takeSlot hands out a zeroed slot of class c: a freed one, else the next
// one of the class's last arena, else one of a new arena.
func (st *State) takeSlot(c uint8) (slot, error) {
	ar := &st.arenas
	if n := len(ar.free[c]); n > 0 {
		s := ar.free[c][n-1]
		ar.free[c] = ar.free[c][:n-1]
		s.a.inUse++
		return s, nil
	}
	list := ar.classes[c]
	per := int32(arenaBytes / slotSizes[c])
	if len(list) == 0 || list[len(list)-1].next == per {
		fd, err := st.newArenaFd()
		if err != nil {
			return slot{}, err
		}
		list = append(list, &arena{fd: fd, class: c})
		ar.classes[c] = list
		ar.count++
	}
	a := list[len(list)-1]
	s := slot{a: a, idx: a.next}
	a.next++
	a.inUse++
	return s, nil
}

// newArenaFd creates an arena's memfd of arenaBytes.
func (st *State) newArenaFd() (int, error) {
	fd, err := st.newMemfd()
	if err != nil {
		return -1, err
	}
	if err := memfdTruncate(fd, arenaBytes); err != nil {
		memfdClose(fd)
		return -1, err
	}
	return fd, nil
}

// freeSlot zeroes s and keeps it for reuse; an arena left with no slot in
// use is punched whole. A slot that cannot be zeroed is never handed out
// again (counted in leaked).
func (st *State) freeSlot(s slot) {
	a := s.a
	a.inUse--
	off, n := s.base(), s.size()
	if a.inUse == 0 {
		off, n = 0, roundUp(int64(a.next)*s.size(), pageSize) // every slot is free: give all its pages back
	}
	if err := memfdFallocate(a.fd, punchMode, off, n); err != nil {
		a.leaked++
		return
	}
	st.arenas.free[a.class] = append(st.arenas.free[a.class], s)
}

// punchMode frees a range and keeps the size: what shmem supports.
const punchMode = unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE

// closeArenas closes every arena's memfd (the state's end).
func (st *State) closeArenas() {
	for c := range st.arenas.classes {
		for _, a := range st.arenas.classes[c] {
			memfdClose(a.fd)
		}
		st.arenas.classes[c], st.arenas.free[c] = nil, nil
	}
	st.arenas.count = 0
}

// slotRead fills p from the slot at off (within the slot).
func slotRead(s slot, p []byte, off int64) error {
	got, err := memfdRead(s.a.fd, p, s.base()+off)
	if err != nil {
		return err
	}
	if got < len(p) {
		return fmt.Errorf("pread arena: short read %d of %d: %w", got, len(p), syscall.EIO)
	}
	return nil
}

// slotZero zeroes [off, off+n) of the slot.
func slotZero(s slot, off, n int64) error {
	if n <= 0 {
		return nil
	}
	return memfdFallocate(s.a.fd, punchMode, s.base()+off, n)
}

// slotCopy copies the first n bytes of src into dst: in the kernel
// (copy_file_range), or through buf where that is refused.
func slotCopy(dst, src slot, n int64, buf []byte) error {
	off := int64(0)
	for off < n {
		in, out := src.base()+off, dst.base()+off
		k, err := unix.CopyFileRange(src.a.fd, &in, dst.a.fd, &out, int(n-off), 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || k == 0 {
			break
		}
		off += int64(k)
	}
	for off < n {
		m := min(n-off, int64(len(buf)))
		if err := slotRead(src, buf[:m], off); err != nil {
			return err
		}
		if err := memfdWrite(dst.a.fd, buf[:m], dst.base()+off); err != nil {
			return err
		}
		off += m
	}
	return nil
}

// slotRangeContent copies the bytes of a slot inside ranges (sorted,
// within the file's size): one extent per range, a slot having no holes;
// one from offset 0 gives nil extents, as memfdRangeContent.
func slotRangeContent(s slot, ranges []Extent) ([]Extent, []byte, error) {
	var total uint64
	for _, g := range ranges {
		total += g.Len
	}
	data := make([]byte, total)
	pos := uint64(0)
	for _, g := range ranges {
		if err := slotRead(s, data[pos:pos+g.Len], int64(g.Off)); err != nil {
			return nil, nil, err
		}
		pos += g.Len
	}
	exts := slices.Clone(ranges)
	if len(exts) == 1 && exts[0].Off == 0 {
		exts = nil
	}
	return exts, data, nil
}
