package fsactor

import (
	"bytes"
	"math"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/jacobsa/fuse/fuseops"
	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

func TestWriteRead(t *testing.T) {
	h := newHarness(t, Config{})
	ino, fh := h.create(rootIno, "f")
	if h.st.inodes[ino].fd != -1 {
		t.Fatal("memfd before the first write")
	}
	h.write(ino, fh, 0, "hello world")
	h.write(ino, fh, 6, "WORLD!")
	if got := h.read(ino, fh, 0, 100); got != "hello WORLD!" {
		t.Fatalf("read %q", got)
	}
	if got := h.read(ino, fh, 6, 3); got != "WOR" {
		t.Fatalf("read middle %q", got)
	}
	if got := h.read(ino, fh, 12, 10); got != "" {
		t.Fatalf("read at EOF %q", got)
	}
	if got := h.read(ino, fh, 1000, 10); got != "" {
		t.Fatalf("read past EOF %q", got)
	}
	if a := h.attr(ino); a.Size != 12 {
		t.Fatalf("size %d", a.Size)
	}
	// A zero-length write changes nothing.
	m := h.attr(ino).Mtime
	h.write(ino, fh, 100, "")
	if a := h.attr(ino); a.Size != 12 || a.Mtime != m {
		t.Fatalf("empty write changed %+v", a)
	}
	// Reads bigger than jacobsa's buffer come back in Data.
	op := &fuseops.ReadFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh), Offset: 0, Size: 1 << 20}
	h.must(op)
	if op.BytesRead != 12 || len(op.Data) != 1 || string(op.Data[0]) != "hello WORLD!" {
		t.Fatalf("big read %d %q", op.BytesRead, op.Data)
	}
}

func TestSparseWriteAndHoles(t *testing.T) {
	h := newHarness(t, Config{})
	ino, fh := h.create(rootIno, "f")
	h.write(ino, fh, 1<<30, "end")
	a := h.attr(ino)
	if a.Size != 1<<30+3 {
		t.Fatalf("size %d", a.Size)
	}
	if al := h.st.inodes[ino].allocated; al > 64<<10 {
		t.Fatalf("sparse file allocated %d bytes", al)
	}
	if got := h.read(ino, fh, 1<<29, 4096); got != strings.Repeat("\x00", 4096) {
		t.Fatal("hole does not read zeros")
	}
	if got := h.read(ino, fh, 1<<30-2, 10); got != "\x00\x00end" {
		t.Fatalf("read across the hole end %q", got)
	}
}

func TestTruncateBothWays(t *testing.T) {
	for _, byHandle := range []bool{false, true} {
		h := newHarness(t, Config{})
		ino, fh := h.create(rootIno, "f")
		h.write(ino, fh, 0, "0123456789")
		trunc := func(size uint64) {
			op := &fuseops.SetInodeAttributesOp{Inode: id(ino), Size: &size}
			if byHandle {
				op.Handle = ptr(fuseops.HandleID(fh))
			}
			h.must(op)
			if op.Attributes.Size != size {
				t.Fatalf("setattr answered size %d", op.Attributes.Size)
			}
		}
		trunc(4)
		if got := h.read(ino, fh, 0, 100); got != "0123" {
			t.Fatalf("after shrink %q", got)
		}
		trunc(8)
		if got := h.read(ino, fh, 0, 100); got != "0123\x00\x00\x00\x00" {
			t.Fatalf("after extend %q", got)
		}
		trunc(0)
		if in := h.st.inodes[ino]; in.fd != -1 || h.st.used != 0 {
			t.Fatal("truncate to 0 kept the memfd")
		}
		// Without a memfd, growing only sets the size: reads give zeros.
		trunc(5000)
		if in := h.st.inodes[ino]; in.fd != -1 {
			t.Fatal("truncate up created a memfd")
		}
		if got := h.read(ino, fh, 4990, 100); got != strings.Repeat("\x00", 10) {
			t.Fatalf("zeros %q", got)
		}
		h.write(ino, fh, 4998, "ab")
		if got := h.read(ino, fh, 4990, 100); got != strings.Repeat("\x00", 8)+"ab" {
			t.Fatalf("after write into grown file %q", got)
		}
	}
}

func TestHugeSizes(t *testing.T) {
	h := newHarness(t, Config{})
	withFd, fh := h.create(rootIno, "a")
	h.write(withFd, fh, 0, "x")
	noFd, _ := h.create(rootIno, "b")
	for _, ino := range []uint64{withFd, noFd} {
		for _, c := range []struct {
			size uint64
			want syscall.Errno
		}{
			{1 << 62, 0},
			{math.MaxInt64, 0},
			{1 << 63, syscall.EINVAL},
			{math.MaxUint64, syscall.EINVAL},
			{1, 0},
		} {
			got := h.errno(&fuseops.SetInodeAttributesOp{Inode: id(ino), Size: ptr(c.size)})
			if got != c.want {
				t.Fatalf("inode %d truncate to %d: %v, want %v", ino, c.size, got, c.want)
			}
			if got == 0 && h.attr(ino).Size != c.size {
				t.Fatalf("size %d after truncate to %d", h.attr(ino).Size, c.size)
			}
		}
	}
	// Writes past the data limit answer EFBIG, and so does an offset that overflows.
	h.wantErrno(syscall.EFBIG, &fuseops.WriteFileOp{Inode: id(withFd), Offset: maxDataEnd, Data: []byte("x")})
	h.wantErrno(syscall.EFBIG, &fuseops.WriteFileOp{Inode: id(withFd), Offset: math.MaxInt64, Data: []byte("xy")})
	h.must(&fuseops.WriteFileOp{Inode: id(withFd), Offset: maxDataEnd - 1, Data: []byte("x")})
}

// memfdErrno is what the memfd's own fallocate answers for a mode on a
// file of size 12288.
func memfdErrno(t *testing.T, mode uint32, off, n int64) syscall.Errno {
	fd, err := memfdNew()
	if err != nil {
		t.Fatal(err)
	}
	defer memfdClose(fd)
	if err := memfdTruncate(fd, 12288); err != nil {
		t.Fatal(err)
	}
	return errnoOf(memfdFallocate(fd, mode, off, n))
}

// TestFallocateModes runs every mode on a small file (an arena slot) and
// a large one (a memfd of its own): each answers what the memfd's own
// fallocate answers, but ZERO_RANGE, which spoolfs does itself (tmpfs has
// none).
func TestFallocateModes(t *testing.T) {
	const (
		keep  = unix.FALLOC_FL_KEEP_SIZE
		punch = unix.FALLOC_FL_PUNCH_HOLE
		zero  = unix.FALLOC_FL_ZERO_RANGE
	)
	modes := []uint32{0, keep, punch | keep, punch, zero, zero | keep,
		unix.FALLOC_FL_COLLAPSE_RANGE, unix.FALLOC_FL_INSERT_RANGE, 0x80}
	for _, big := range []bool{false, true} {
		for _, mode := range modes {
			fallocateMode(t, mode, big)
		}
	}
	// An invalid range is the memfd's answer too.
	h := newHarness(t, Config{})
	ino, _ := h.create(rootIno, "f")
	h.wantErrno(syscall.EINVAL, &fuseops.FallocateOp{Inode: id(ino), Offset: 0, Length: 0})
	h.wantErrno(syscall.EFBIG, &fuseops.FallocateOp{Inode: id(ino), Offset: maxDataEnd, Length: 1})
}

// fallocateMode runs mode on [4096, 20480) of a file of 12288 bytes "a":
// in an arena slot, or (big) in a memfd of its own.
func fallocateMode(t *testing.T, mode uint32, big bool) {
	const keep, punch, zero = unix.FALLOC_FL_KEEP_SIZE, unix.FALLOC_FL_PUNCH_HOLE, unix.FALLOC_FL_ZERO_RANGE
	h := newHarness(t, Config{})
	ino, fh := h.create(rootIno, "f")
	h.write(ino, fh, 0, strings.Repeat("a", 12288))
	if big { // grown past arenaMax and back: the memfd stays
		h.must(&fuseops.SetInodeAttributesOp{Inode: id(ino), Size: ptr(uint64(arenaMax + 1))})
		h.must(&fuseops.SetInodeAttributesOp{Inode: id(ino), Size: ptr(uint64(12288))})
	}
	if in := h.st.inodes[ino]; (in.fd >= 0) != big || (in.slot.a != nil) == big {
		t.Fatalf("big %v: fd %d slot %v", big, in.fd, in.slot.a != nil)
	}
	h.take()
	got := h.errno(&fuseops.FallocateOp{Inode: id(ino), Handle: fuseops.HandleID(fh), Offset: 4096, Length: 16384, Mode: mode})
	want := memfdErrno(t, mode, 4096, 16384)
	if mode&^keep == zero {
		want = 0
	}
	if got != want {
		t.Errorf("big %v mode %#x: %v, memfd says %v", big, mode, got, want)
	}
	if got != 0 {
		return
	}
	size := h.attr(ino).Size
	switch {
	case mode&keep == 0:
		if size != 4096+16384 {
			t.Errorf("big %v mode %#x: size %d", big, mode, size)
		}
	case size != 12288:
		t.Errorf("big %v mode %#x: size %d", big, mode, size)
	}
	if mode&(punch|zero) != 0 {
		want := strings.Repeat("a", 4096) + strings.Repeat("\x00", int(size)-4096)
		if r := h.read(ino, fh, 0, 40000); r != want {
			t.Errorf("big %v mode %#x: content wrong (%d bytes)", big, mode, len(r))
		}
	}
	if mode == punch|keep && big && h.st.inodes[ino].allocated > 4096 {
		t.Errorf("punch kept %d bytes allocated", h.st.inodes[ino].allocated)
	}
	if !h.st.inodes[ino].dirty {
		t.Errorf("big %v mode %#x: not dirty", big, mode)
	}
}

func TestAppend(t *testing.T) {
	for _, wb := range []bool{false, true} {
		h := newHarness(t, Config{})
		h.st.SetWritebackCache(wb)
		ino := h.mkfile(rootIno, "f", "start")
		fh := h.open(ino, syscall.O_WRONLY|syscall.O_APPEND)
		h.write(ino, fh, 0, "+more")
		want := "start+more"
		if wb {
			want = "+more" // the kernel positions writes itself
		}
		if got := h.read(ino, fh, 0, 100); got != want {
			t.Fatalf("writeback %v: %q, want %q", wb, got, want)
		}
		// A handle without O_APPEND writes where it is told.
		fh2 := h.open(ino, syscall.O_RDWR)
		h.write(ino, fh2, 0, "S")
		if got := h.read(ino, fh2, 0, 1); got != "S" {
			t.Fatalf("plain handle wrote elsewhere: %q", got)
		}
	}
}

func TestOpenTruncate(t *testing.T) {
	h := newHarness(t, Config{})
	ino := h.mkfile(rootIno, "f", "old content")
	h.take()
	fh := h.open(ino, syscall.O_WRONLY|syscall.O_TRUNC)
	a := h.attr(ino)
	if a.Size != 0 || a.Mtime != h.now.UnixNano()-1e9 {
		t.Fatalf("after O_TRUNC %+v", a)
	}
	recs := h.take()
	if len(recs) != 1 || recs[0].Op != RecSetattr || recs[0].Attr.Size != 0 {
		t.Fatalf("records %+v", recs)
	}
	h.release(fh)
	// Read-only opens never truncate.
	h.mkfile(rootIno, "g", "keep")
	g, _ := h.lookup(rootIno, "g")
	h.release(h.open(g, syscall.O_RDONLY))
	if h.attr(g).Size != 4 {
		t.Fatal("read-only open truncated")
	}
}

func TestFlushShipsDirtyData(t *testing.T) {
	h := newHarness(t, Config{})
	ino, fh := h.create(rootIno, "f")
	h.write(ino, fh, 0, "message")
	h.take()
	w := h.must(&fuseops.FlushFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)})
	recs := h.take()
	if len(recs) != 1 || recs[0].Op != RecData || string(recs[0].Data) != "message" ||
		recs[0].Attr.Size != 7 || recs[0].Ino != ino {
		t.Fatalf("records %+v", recs)
	}
	if w != recs[0].LSN {
		t.Fatalf("flush waits for %d, want %d", w, recs[0].LSN)
	}
	// Clean now: a second flush and an fsync ship nothing and wait for the
	// file's last record, not for what changed elsewhere since.
	h.mkdir(rootIno, "later", 0o755)
	if h.st.lsn == w {
		t.Fatal("mkdir emitted nothing")
	}
	h.take()
	if w2 := h.must(&fuseops.FlushFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)}); w2 != w {
		t.Fatalf("clean flush waits for %d, want its data record %d", w2, w)
	}
	if w2 := h.must(&fuseops.SyncFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)}); w2 != w {
		t.Fatalf("fsync waits for %d, want its data record %d", w2, w)
	}
	// A change to the file's attributes is part of what its close waits for.
	mode := os.FileMode(0o600)
	h.must(&fuseops.SetInodeAttributesOp{Inode: id(ino), Mode: &mode})
	setattr := h.st.lsn
	h.mkdir(rootIno, "later2", 0o755)
	h.take()
	if w2 := h.must(&fuseops.FlushFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)}); w2 != setattr {
		t.Fatalf("flush after chmod waits for %d, want the setattr %d", w2, setattr)
	}
	if recs := h.take(); len(recs) != 0 {
		t.Fatalf("clean file shipped %+v", recs)
	}
	// FSYNC of a dirty file ships too; RELEASE of a dirty file ships and does not wait.
	h.write(ino, fh, 7, "!")
	if w := h.must(&fuseops.SyncFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)}); w != h.st.lsn {
		t.Fatal("fsync wait")
	}
	if recs := h.take(); len(recs) != 1 || string(recs[0].Data) != "!" || !recs[0].Partial ||
		!reflect.DeepEqual(recs[0].Ranges, []Extent{{Off: 7, Len: 1}}) || recs[0].Attr.Size != 8 {
		t.Fatalf("fsync records %+v: want the byte written alone", recs)
	}
	h.write(ino, fh, 0, "M")
	if w := h.must(&fuseops.ReleaseFileHandleOp{Handle: fuseops.HandleID(fh)}); w != 0 {
		t.Fatalf("release waits for %d", w)
	}
	if recs := h.take(); len(recs) != 1 || recs[0].Op != RecData || string(recs[0].Data) != "M" {
		t.Fatalf("release records %+v", recs)
	}
	// A small file's data record carries its bytes, copied on the actor
	// from its arena slot: no view.
	fh = h.open(ino, syscall.O_RDWR)
	h.write(ino, fh, 0, "X")
	h.must(&fuseops.FlushFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)})
	if rec := h.takeRaw()[0]; rec.Content != nil || string(rec.Data) != "X" || !rec.Partial {
		t.Fatalf("small file's data record %+v", rec)
	}
	// A large file's (a memfd of its own) carries a view. A data record is
	// the content at its LSN: a write after the flush, while the record's
	// view is unread, copies the file first (counted) and does not change
	// the record.
	ino, fh = h.create(rootIno, "big")
	h.write(ino, fh, 0, "Xessage!")
	h.must(&fuseops.SetInodeAttributesOp{Inode: id(ino), Size: ptr(uint64(arenaMax + 1))})
	h.must(&fuseops.FlushFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)})
	recs = h.takeRaw()
	rec := recs[len(recs)-1]
	if rec.Content == nil || rec.Data != nil {
		t.Fatalf("data record without a content view: %+v", rec)
	}
	h.write(ino, fh, 0, "Y")
	if n := h.st.ContentCopies(); n != 1 {
		t.Fatalf("%d copies after a write under a live view, want 1", n)
	}
	readContent(t, rec)
	if !bytes.HasPrefix(rec.Data, []byte("Xessage!")) {
		t.Fatalf("record changed under the sink: %q", rec.Data[:8])
	}
	if got := h.read(ino, fh, 0, 8); got != "Yessage!" {
		t.Fatalf("file reads %q after the copy", got)
	}
	// Once the view is released the file changes in place: no copy.
	h.must(&fuseops.FlushFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)})
	h.take()
	h.write(ino, fh, 0, "Z")
	if n := h.st.ContentCopies(); n != 1 {
		t.Fatalf("%d copies after a write with the view released, want still 1", n)
	}
}

func TestDataRecordOfSparseTail(t *testing.T) {
	h := newHarness(t, Config{})
	ino, fh := h.create(rootIno, "f")
	h.write(ino, fh, 0, "abc")
	h.must(&fuseops.SetInodeAttributesOp{Inode: id(ino), Size: ptr(uint64(1 << 40))})
	h.take()
	h.must(&fuseops.FlushFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)})
	r := h.take()[0]
	if r.Attr.Size != 1<<40 || len(r.Data) > pageSize || !bytes.HasPrefix(r.Data, []byte("abc")) {
		t.Fatalf("data record of %d bytes, size %d", len(r.Data), r.Attr.Size)
	}
	// A file that was only truncated ships an empty record with its size.
	g, gh := h.create(rootIno, "g")
	h.must(&fuseops.SetInodeAttributesOp{Inode: id(g), Size: ptr(uint64(100))})
	h.take()
	h.must(&fuseops.FlushFileOp{Inode: id(g), Handle: fuseops.HandleID(gh)})
	if r := h.take()[0]; r.Op != RecData || len(r.Data) != 0 || r.Attr.Size != 100 {
		t.Fatalf("record %+v", r)
	}
}

// TestDataRecordOfSparseFile: a data record carries what was written, not
// the holes: "abc" at 0 and "x" at 256 MiB ship two ranges and their four
// bytes (before extents: 256 MiB of zeros in the record; before ranges, a
// page and a byte).
func TestDataRecordOfSparseFile(t *testing.T) {
	h := newHarness(t, Config{})
	ino, fh := h.create(rootIno, "f")
	h.write(ino, fh, 0, "abc")
	h.write(ino, fh, 256<<20, "x")
	h.take()
	h.must(&fuseops.FlushFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)})
	r := h.take()[0]
	want := []Extent{{Off: 0, Len: 3}, {Off: 256 << 20, Len: 1}}
	if r.Attr.Size != 256<<20+1 || string(r.Data) != "abcx" || !reflect.DeepEqual(r.Extents, want) ||
		!r.Partial || !reflect.DeepEqual(r.Ranges, want) {
		t.Fatalf("data record of %q in %v (ranges %v), size %d", r.Data, r.Extents, r.Ranges, r.Attr.Size)
	}
}

func TestCapacity(t *testing.T) {
	h := newHarness(t, Config{Capacity: 64 << 10})
	ino, fh := h.create(rootIno, "f")
	h.write(ino, fh, 0, strings.Repeat("a", 48<<10))
	h.wantErrno(syscall.ENOSPC, &fuseops.WriteFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh), Offset: 48 << 10, Data: make([]byte, 20<<10)})
	if a := h.attr(ino); a.Size != 48<<10 {
		t.Fatalf("failed write changed size to %d", a.Size)
	}
	// Overwriting allocated bytes needs no room, even when nearly full.
	h.write(ino, fh, 48<<10, strings.Repeat("b", 12<<10)) // fills the volume to 60 KiB
	h.write(ino, fh, 0, strings.Repeat("c", 48<<10))
	st := &fuseops.StatFSOp{}
	h.must(st)
	if st.Blocks != 16 || st.BlocksFree != 1 || st.BlocksAvailable != 1 || st.BlockSize != 4096 || st.IoSize != 4096 {
		t.Fatalf("statfs %+v", st)
	}
	h.wantErrno(syscall.ENOSPC, &fuseops.FallocateOp{Inode: id(ino), Handle: fuseops.HandleID(fh), Offset: 64 << 10, Length: 8192})
	// Freeing space makes room again.
	h.must(&fuseops.SetInodeAttributesOp{Inode: id(ino), Size: ptr(uint64(4096))})
	h.write(ino, fh, 4096, strings.Repeat("d", 32<<10))
}

func TestMaxInodes(t *testing.T) {
	h := newHarness(t, Config{MaxInodes: 4})
	h.mkdir(rootIno, "a", 0o755)
	h.mkfile(rootIno, "b", "")
	h.mkfile(rootIno, "c", "")
	h.wantErrno(syscall.ENOSPC, &fuseops.MkDirOp{Parent: rootIno, Name: "d", Mode: 0o755})
	h.wantErrno(syscall.ENOSPC, &fuseops.CreateFileOp{Parent: rootIno, Name: "d", Mode: 0o644})
	st := &fuseops.StatFSOp{}
	h.must(st)
	if st.Inodes != 4 || st.InodesFree != 0 {
		t.Fatalf("statfs inodes %d free %d", st.Inodes, st.InodesFree)
	}
	// Links need no inode.
	b, _ := h.lookup(rootIno, "b")
	h.must(&fuseops.CreateLinkOp{Parent: rootIno, Name: "b2", Target: id(b)})
}

// TestOutOfDescriptors lowers the open-file limit until memfd_create fails
// for large files: the writer gets ENOSPC (the descriptors limit, named in
// the effects) and nothing breaks; small files, in arenas, still write.
func TestOutOfDescriptors(t *testing.T) {
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, Config{})
	warm, wfh := h.create(rootIno, "warm")
	h.write(warm, wfh, 0, "x") // the 256-byte class has its arena
	low := old
	low.Cur = 64
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		testsupport.Unavailable(t, "cannot lower RLIMIT_NOFILE: %v", err)
	}
	defer unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
	var hit bool
	for i := 0; i < 100 && !hit; i++ {
		ino, fh := h.create(rootIno, strings.Repeat("f", 1+i))
		big := &fuseops.WriteFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh), Offset: arenaMax, Data: []byte("x")}
		switch e := h.errno(big); e {
		case 0:
		case syscall.ENOSPC:
			hit = true
			if h.limit != LimitDescriptors {
				t.Fatalf("limit %v, want descriptors", h.limit)
			}
			if a := h.attr(ino); a.Size != 0 || h.st.inodes[ino].hasContent() {
				t.Fatalf("failed write left %+v", a)
			}
			small, sfh := h.create(rootIno, "small")
			h.write(small, sfh, 0, "fits an arena")
		default:
			t.Fatalf("write: %v", e)
		}
	}
	if !hit {
		t.Fatal("never ran out of descriptors")
	}
}

// TestDataRecordWithoutDescriptors: when the memfd cannot be dup'd for a
// view (out of descriptors), the data record takes its bytes on the actor
// and the flush succeeds (counted by InlineContents).
func TestDataRecordWithoutDescriptors(t *testing.T) {
	h := newHarness(t, Config{})
	ino, fh := h.create(rootIno, "f")
	h.write(ino, fh, arenaMax, "message")
	h.take()
	dup := dupFD
	dupFD = func(int) (int, error) { return -1, syscall.EMFILE }
	t.Cleanup(func() { dupFD = dup })
	h.must(&fuseops.FlushFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)})
	r := h.takeRaw()[0]
	if r.Content != nil || !bytes.HasSuffix(r.Data, []byte("message")) || h.st.InlineContents() != 1 {
		t.Fatalf("record %+v, %d inline contents; want the bytes in the record, 1", r, h.st.InlineContents())
	}
}
