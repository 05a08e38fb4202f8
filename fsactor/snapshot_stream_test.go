package fsactor

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jacobsa/fuse/fuseops"
	"golang.org/x/sys/unix"
)

// TestStreamSnapshotCopyOnWrite: a streamed snapshot reads every file as
// it was when it was taken, whatever happens to the files meanwhile —
// written, truncated, emptied, holes punched, unlinked and freed — while
// the volume itself has the changes; the memfds it kept are closed when it
// ends, and no file stays frozen.
func TestStreamSnapshotCopyOnWrite(t *testing.T) {
	h := newHarness(t, Config{})
	h.richVolume()
	want, err := h.st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	got, err := h.st.streamSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.st.streamSnapshot(); !errors.Is(err, errSnapshotBusy) {
		t.Fatalf("a second streamed snapshot: %v", err)
	}
	h.st.CheckInvariants()

	sg, _ := h.lookup(rootIno, "sg")
	file := func(name string) uint64 {
		t.Helper()
		ino, err := h.lookup(sg, name)
		if err != nil {
			t.Fatal(err)
		}
		return ino
	}
	m10, m20, m40, m41 := file("m10"), file("m20"), file("m40"), file("m41")
	fh := h.open(m10, unix.O_RDWR)
	h.write(m10, fh, 0, "CHANGED")
	h.write(m10, fh, 0, "twice") // the copy is made once
	h.release(fh)
	h.must(&fuseops.SetInodeAttributesOp{Inode: id(m20), Size: ptr(uint64(5))})
	h.must(&fuseops.SetInodeAttributesOp{Inode: id(m40), Size: ptr(uint64(0))})
	h.must(&fuseops.UnlinkOp{Parent: id(sg), Name: "m41"})
	h.forget(m41, h.st.inodes[m41].nlookup)
	if h.live(m41) {
		t.Fatal("m41 not freed")
	}
	sp, _ := h.lookup(rootIno, "sparse")
	h.must(&fuseops.FallocateOp{Inode: id(sp), Offset: 1 << 20, Length: 4096, Mode: unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE})
	moved := make([]int, 0, len(h.st.snap.moved))
	for _, c := range h.st.snap.moved {
		moved = append(moved, c.fd)
	}
	if len(moved) != 5 {
		t.Fatalf("%d memfds kept for the snapshot, want 5 (m10, m20, m40, m41, sparse)", len(moved))
	}

	for i := range got.Inodes {
		si := &got.Inodes[i]
		if si.Data != nil {
			t.Fatalf("inode %d: content in a streamed snapshot", si.Ino)
		}
		if si.DataLen > 0 {
			exts, data, err := h.st.snapshotData(si.Ino)
			if err != nil {
				t.Fatalf("inode %d: %v", si.Ino, err)
			}
			if int64(len(data)) != si.DataLen {
				t.Fatalf("inode %d: %d bytes read, %d announced", si.Ino, len(data), si.DataLen)
			}
			si.Data, si.Extents, si.DataLen = data, exts, 0
		}
	}
	if !reflect.DeepEqual(want, got) {
		t.Fatal("the streamed snapshot differs from the volume as it was")
	}

	fh = h.open(m10, unix.O_RDONLY)
	if s := h.read(m10, fh, 0, 10); s != "twiceEDxxx" {
		t.Fatalf("m10 now reads %q", s)
	}
	h.release(fh)
	if a := h.attr(m20); a.Size != 5 {
		t.Fatalf("m20 size %d", a.Size)
	}

	h.st.endSnapshot()
	h.st.CheckInvariants()
	for _, fd := range moved {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != unix.EBADF {
			t.Fatalf("memfd %d kept for the snapshot still open after it ended: %v", fd, err)
		}
	}
	for ino, in := range h.st.inodes {
		if in.frozen {
			t.Fatalf("inode %d still frozen", ino)
		}
	}
	if _, _, err := h.st.snapshotData(m10); err == nil {
		t.Fatal("content read after the snapshot ended")
	}
	// A new one can start, and a file written after it is copied again.
	if _, err := h.st.streamSnapshot(); err != nil {
		t.Fatal(err)
	}
	fh = h.open(m10, unix.O_RDWR)
	h.write(m10, fh, 0, "third")
	h.release(fh)
	if _, data, err := h.st.snapshotData(m10); err != nil || !strings.HasPrefix(string(data), "twice") {
		t.Fatalf("second snapshot of m10: %q, %v", data, err)
	}
	h.st.endSnapshot()
	h.st.CheckInvariants()
}

// TestStreamSnapshotSkipsUnlinked: an unlinked file still open is not in a
// streamed snapshot either, and its writes go on as before.
func TestStreamSnapshotSkipsUnlinked(t *testing.T) {
	h := newHarness(t, Config{})
	o, oh := h.create(rootIno, "orphan")
	h.write(o, oh, 0, "bye")
	h.must(&fuseops.UnlinkOp{Parent: rootIno, Name: "orphan"})
	snap, err := h.st.streamSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	for _, si := range snap.Inodes {
		if si.Ino == o {
			t.Fatal("unlinked file in the snapshot")
		}
	}
	h.write(o, oh, 3, " again")
	if s := h.read(o, oh, 0, 20); s != "bye again" {
		t.Fatalf("orphan reads %q", s)
	}
	h.release(oh)
	h.st.endSnapshot()
}

// TestStreamSnapshotSparse: a streamed snapshot of a sparse file reads its
// extents, not its holes, and the copy a write makes of the frozen file
// keeps the holes (before: the copy filled them with zeros, 64 MiB here).
func TestStreamSnapshotSparse(t *testing.T) {
	h := newHarness(t, Config{})
	ino, fh := h.create(rootIno, "sparse")
	h.write(ino, fh, 64<<20, "x")
	snap, err := h.st.streamSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	for _, si := range snap.Inodes {
		if si.Ino == ino && si.DataLen != 1 {
			t.Fatalf("sparse file announced with %d bytes", si.DataLen)
		}
	}
	h.write(ino, fh, 0, "y") // thaws: a copy of the memfd
	if a := h.st.inodes[ino].allocated; a > 2*pageSize {
		t.Fatalf("the thawed copy allocates %d bytes", a)
	}
	exts, data, err := h.st.snapshotData(ino)
	if err != nil || string(data) != "x" || !reflect.DeepEqual(exts, []Extent{{Off: 64 << 20, Len: 1}}) {
		t.Fatalf("snapshot content %q at %v (%v)", data, exts, err)
	}
	if s := h.read(ino, fh, 0, 2); s != "y\x00" {
		t.Fatalf("file reads %q", s)
	}
	h.release(fh)
	h.st.endSnapshot()
	h.st.CheckInvariants()
}

// BenchmarkSnapshotOnActor: how long a resync's snapshot holds the actor
// (every FUSE request waits meanwhile) and what it allocates, for a volume
// of 2,000 files of 64 KiB (125 MiB): the whole copy (State.Snapshot)
// against the streamed snapshot's one call (its content is read a file at
// a time later, each a call of its own: see the "file" case).
//
//	go test ./fsactor -run '^$' -bench SnapshotOnActor -benchmem
func BenchmarkSnapshotOnActor(b *testing.B) {
	st, err := NewState(Config{DiscardContent: true}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	c, now := Caller{Uid: 0, Gid: 0, Pid: 1}, t0
	do := func(op any) {
		eff := st.Handle(op, c, now)
		if eff.Err != 0 {
			b.Fatalf("%T: %v", op, eff.Err)
		}
		eff.Reset()
	}
	data := []byte(strings.Repeat("m", 64<<10))
	var last uint64
	for i := range 2000 {
		op := &fuseops.CreateFileOp{Parent: rootIno, Name: fmt.Sprintf("m%04d", i), Mode: 0o644}
		do(op)
		do(&fuseops.WriteFileOp{Inode: op.Entry.Child, Handle: op.Handle, Data: data})
		do(&fuseops.ReleaseFileHandleOp{Handle: op.Handle})
		last = uint64(op.Entry.Child)
	}
	b.Run("copy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := st.Snapshot(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stream", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := st.streamSnapshot(); err != nil {
				b.Fatal(err)
			}
			st.endSnapshot()
		}
	})
	b.Run("file", func(b *testing.B) {
		if _, err := st.streamSnapshot(); err != nil {
			b.Fatal(err)
		}
		defer st.endSnapshot()
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := st.snapshotData(last); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestStreamSnapshotRandom: random writes, truncates, punched holes,
// unlinks and creates while streamed snapshots start, are read and end;
// every content read from a snapshot equals the content of a whole copy
// taken at the same moment.
func TestStreamSnapshotRandom(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	h := newHarness(t, Config{})
	type file struct {
		ino, fh uint64
		name    string
	}
	var files []file
	next := 0
	create := func() {
		name := fmt.Sprintf("f%d", next)
		next++
		ino, fh := h.create(rootIno, name)
		files = append(files, file{ino, fh, name})
	}
	for range 12 {
		create()
	}
	var ref map[uint64]SnapInode // content per inode of the snapshot in progress
	check := func(ino uint64) {
		t.Helper()
		want, ok := ref[ino]
		if !ok {
			return
		}
		exts, got, err := h.st.snapshotData(ino)
		if err != nil || string(got) != string(want.Data) || !reflect.DeepEqual(exts, want.Extents) {
			t.Fatalf("inode %d: snapshot content %d bytes in %v (%v), want %d in %v", ino, len(got), exts, err, len(want.Data), want.Extents)
		}
	}
	for step := range 3000 {
		f := files[rng.IntN(len(files))]
		switch r := rng.IntN(100); {
		case r < 35:
			data := make([]byte, 1+rng.IntN(9000))
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			h.write(f.ino, f.fh, int64(rng.IntN(20000)), string(data))
		case r < 45:
			h.must(&fuseops.SetInodeAttributesOp{Inode: id(f.ino), Size: ptr(uint64(rng.IntN(12000)))})
		case r < 50:
			h.must(&fuseops.FallocateOp{Inode: id(f.ino), Handle: fuseops.HandleID(f.fh), Offset: uint64(rng.IntN(16000)), Length: uint64(1 + rng.IntN(8000)),
				Mode: unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE})
		case r < 55 && len(files) > 4:
			h.must(&fuseops.UnlinkOp{Parent: rootIno, Name: f.name})
			h.release(f.fh)
			h.forget(f.ino, h.st.inodes[f.ino].nlookup)
			files = slices.DeleteFunc(files, func(g file) bool { return g.ino == f.ino })
			create()
		case r < 62:
			if ref == nil {
				snap, err := h.st.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				ref = map[uint64]SnapInode{}
				for _, si := range snap.Inodes {
					if si.Data != nil {
						ref[si.Ino] = si
					}
				}
				streamed, err := h.st.streamSnapshot()
				if err != nil {
					t.Fatal(err)
				}
				for _, si := range streamed.Inodes {
					if si.DataLen != int64(len(ref[si.Ino].Data)) {
						t.Fatalf("step %d: inode %d announced %d bytes, has %d", step, si.Ino, si.DataLen, len(ref[si.Ino].Data))
					}
				}
			}
		case r < 90:
			if ref != nil {
				check(f.ino)
			}
		default:
			if ref != nil {
				for ino := range ref {
					check(ino)
				}
				h.st.endSnapshot()
				ref = nil
			}
		}
	}
	if ref != nil {
		h.st.endSnapshot()
	}
	for _, f := range files {
		h.release(f.fh)
	}
}
