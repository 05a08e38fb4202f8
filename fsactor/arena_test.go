package fsactor

import (
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/jacobsa/fuse/fuseops"
)

// step runs op on the state without the harness's invariant check after
// every op (tests of thousands of files check once at the end).
func (h *harness) step(op any) syscall.Errno {
	h.t.Helper()
	h.now = h.now.Add(time.Microsecond)
	e := h.st.Handle(op, h.c, h.now).Err
	h.collect()
	h.recs = h.recs[:0]
	return e
}

// bulkFiles creates n files of size bytes (byte i%251 of file k is
// k+i), flushed and released, without checking invariants per op.
func (h *harness) bulkFiles(n, size int) []uint64 {
	h.t.Helper()
	inos := make([]uint64, n)
	for k := range n {
		c := &fuseops.CreateFileOp{Parent: rootIno, Name: fmt.Sprintf("m%07d", k), Mode: 0o644, OpenFlags: syscall.O_RDWR}
		if e := h.step(c); e != 0 {
			h.t.Fatalf("create %d: %v", k, e)
		}
		if e := h.step(&fuseops.WriteFileOp{Inode: c.Entry.Child, Handle: c.Handle, Data: fileBytes(k, size)}); e != 0 {
			h.t.Fatalf("write %d: %v", k, e)
		}
		h.step(&fuseops.FlushFileOp{Inode: c.Entry.Child, Handle: c.Handle})
		h.step(&fuseops.ReleaseFileHandleOp{Handle: c.Handle})
		inos[k] = uint64(c.Entry.Child)
	}
	return inos
}

func fileBytes(k, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte((k + i) % 251)
	}
	return b
}

// TestArenaFilesShareDescriptors: 5,000 files of 1 KiB live in one arena
// (one descriptor), cost 1 KiB each in statfs, read back intact, and their
// data records carry their bytes.
func TestArenaFilesShareDescriptors(t *testing.T) {
	h := newHarness(t, Config{})
	const n = 5000
	inos := h.bulkFiles(n, 1024)
	if h.st.arenas.count != 1 {
		t.Fatalf("%d arenas for %d files of 1 KiB, want 1", h.st.arenas.count, n)
	}
	if h.st.used != n*1024 {
		t.Fatalf("used %d, want %d (1 KiB each)", h.st.used, n*1024)
	}
	sf := &fuseops.StatFSOp{}
	h.must(sf)
	if used := sf.Blocks - sf.BlocksFree; used != n*1024/4096 {
		t.Fatalf("statfs: %d blocks used, want %d", used, n*1024/4096)
	}
	if free := sf.Inodes - sf.InodesFree; free != n+1 {
		t.Fatalf("statfs: %d inodes used, want %d", free, n+1)
	}
	for k, ino := range inos {
		r := &fuseops.ReadFileOp{Inode: id(ino), Size: 2048, Dst: make([]byte, 2048)}
		if e := h.step(r); e != 0 || string(r.Dst[:r.BytesRead]) != string(fileBytes(k, 1024)) {
			t.Fatalf("file %d reads back %d bytes, %v", k, r.BytesRead, e)
		}
	}
	h.st.CheckInvariants()
}

// TestArenaSlotsReused: a deleted file's slot is the next one handed out,
// zeroed; an arena whose last slot goes gives its pages back.
func TestArenaSlotsReused(t *testing.T) {
	h := newHarness(t, Config{})
	inos := h.bulkFiles(3, 1000)
	s := h.st.inodes[inos[1]].slot
	h.must(&fuseops.UnlinkOp{Parent: rootIno, Name: "m0000001"})
	h.forget(inos[1], h.st.inodes[inos[1]].nlookup)
	ino, fh := h.create(rootIno, "again")
	h.write(ino, fh, 0, "x")
	h.write(ino, fh, 900, "y") // within the 1 KiB class: the slot's bytes between read zeros
	if got := h.st.inodes[ino].slot; got != s {
		t.Fatalf("new file in slot %d, want the freed slot %d", got.idx, s.idx)
	}
	if got := h.read(ino, fh, 0, 901); got != "x"+strings.Repeat("\x00", 899)+"y" {
		t.Fatalf("reused slot reads %q", got[:10])
	}
	a := s.a
	h.release(fh)
	for _, name := range []string{"m0000000", "m0000002", "again"} {
		in, _ := h.lookup(rootIno, name)
		h.must(&fuseops.UnlinkOp{Parent: rootIno, Name: name})
		h.forget(in, h.st.inodes[in].nlookup)
	}
	if a.inUse != 0 {
		t.Fatalf("%d slots in use", a.inUse)
	}
	if _, alloc, err := memfdStat(a.fd); err != nil || alloc != 0 {
		t.Fatalf("an empty arena holds %d bytes (%v)", alloc, err)
	}
}

// TestArenaGrowth: a file moves to bigger classes as it grows, to a memfd
// of its own past arenaMax, and its bytes follow; truncating zeroes the
// slot's tail, so growing again reads zeros.
func TestArenaGrowth(t *testing.T) {
	h := newHarness(t, Config{})
	ino, fh := h.create(rootIno, "f")
	h.write(ino, fh, 0, "abcdef")
	in := h.st.inodes[ino]
	if in.slot.a == nil || in.slot.size() != 256 || in.allocated != 256 {
		t.Fatalf("6 bytes in slot of %d", in.slot.size())
	}
	h.must(&fuseops.SetInodeAttributesOp{Inode: id(ino), Size: ptr(uint64(2))})
	h.must(&fuseops.SetInodeAttributesOp{Inode: id(ino), Size: ptr(uint64(6))})
	if got := h.read(ino, fh, 0, 10); got != "ab\x00\x00\x00\x00" {
		t.Fatalf("truncated and extended: %q", got)
	}
	h.write(ino, fh, 3000, "z")
	if in.slot.size() != 3072 || h.st.used != 3072 {
		t.Fatalf("3001 bytes in slot of %d, used %d", in.slot.size(), h.st.used)
	}
	if got := h.read(ino, fh, 0, 2); got != "ab" {
		t.Fatalf("moved slot reads %q", got)
	}
	h.write(ino, fh, arenaMax, "!")
	if in.fd < 0 || in.slot.a != nil {
		t.Fatal("a file past arenaMax still in an arena")
	}
	if got := h.read(ino, fh, 0, 2) + h.read(ino, fh, 3000, 1) + h.read(ino, fh, arenaMax, 1); got != "abz!" {
		t.Fatalf("moved to a memfd: %q", got)
	}
	h.must(&fuseops.SetInodeAttributesOp{Inode: id(ino), Size: ptr(uint64(10))})
	if in.fd < 0 {
		t.Fatal("a memfd file truncated small moved back") // documented: it stays
	}
	h.must(&fuseops.SetInodeAttributesOp{Inode: id(ino), Size: ptr(uint64(0))})
	if in.hasContent() || h.st.used != 0 {
		t.Fatalf("truncated to 0: content %v, used %d", in.hasContent(), h.st.used)
	}
}

// TestArenaCapacity: a volume of small files fills to --capacity, then
// answers ENOSPC naming the capacity; every file written reads back.
func TestArenaCapacity(t *testing.T) {
	h := newHarness(t, Config{Capacity: 100 << 10})
	inos := h.bulkFiles(100, 1024)
	c := &fuseops.CreateFileOp{Parent: rootIno, Name: "over", Mode: 0o644}
	h.must(c)
	if e := h.step(&fuseops.WriteFileOp{Inode: c.Entry.Child, Handle: c.Handle, Data: []byte("x")}); e != syscall.ENOSPC || h.limit != LimitCapacity {
		t.Fatalf("write past capacity: %v, limit %v", e, h.limit)
	}
	for k, ino := range inos {
		r := &fuseops.ReadFileOp{Inode: id(ino), Size: 1024, Dst: make([]byte, 1024)}
		if e := h.step(r); e != 0 || string(r.Dst) != string(fileBytes(k, 1024)) {
			t.Fatalf("file %d lost", k)
		}
	}
	h.st.CheckInvariants()
}

// TestMemoryPerFile measures the Go heap a file costs the state (inode,
// dentry, handle-free bookkeeping, arena slot): docs/benchmarks.md.
func TestMemoryPerFile(t *testing.T) {
	const n = 50_000
	h := newHarness(t, Config{DiscardContent: true})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	h.bulkFiles(n, 1024)
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("Go heap per file of 1 KiB: %.0f bytes (%d files); memfd content per file: %d bytes; inode struct %d bytes",
		per, n, h.st.used/n, inodeSize)
	if per > 2048 {
		t.Errorf("%.0f bytes of heap per file", per)
	}
}

var inodeSize = unsafe.Sizeof(inode{})

// TestArenaAppendsGrowRoomy: a file written in small appends takes a slot
// with room (4× its slot) when it outgrows one, and the class of its size
// when it is shipped.
func TestArenaAppendsGrowRoomy(t *testing.T) {
	h := newHarness(t, Config{})
	ino, fh := h.create(rootIno, "f")
	in := h.st.inodes[ino]
	var sizes []int64
	for off := int64(0); off < 5000; off += 1000 {
		h.write(ino, fh, off, strings.Repeat("m", 1000))
		sizes = append(sizes, in.slot.size())
	}
	if want := []int64{1024, 4096, 4096, 4096, 16384}; fmt.Sprint(sizes) != fmt.Sprint(want) {
		t.Fatalf("slot sizes %v while appending, want %v", sizes, want)
	}
	h.must(&fuseops.FlushFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)})
	if in.slot.size() != 6144 || h.st.used != 6144 {
		t.Fatalf("after the flush: slot of %d, used %d; want 6144", in.slot.size(), h.st.used)
	}
	if got := h.read(ino, fh, 0, 6000); got != strings.Repeat("m", 5000) {
		t.Fatalf("content after the moves: %d bytes", len(got))
	}
}
