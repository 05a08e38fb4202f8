package fsactor

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"syscall"
	"testing"

	"github.com/jacobsa/fuse/fuseops"
	"golang.org/x/sys/unix"
)

// replay applies a record (content read) about one regular file to model,
// its content, as a replica does: a setattr resizes it; a whole data
// record replaces it; a partial one zeroes its ranges, puts its data and
// takes its size. Other records leave it.
func replay(model []byte, r *Record) []byte {
	resize := func(size uint64) []byte {
		if size <= uint64(len(model)) {
			return model[:size]
		}
		return append(model, make([]byte, size-uint64(len(model)))...)
	}
	switch {
	case r.Op == RecSetattr:
		return resize(r.Attr.Size)
	case r.Op != RecData:
		return model
	case !r.Partial:
		model = make([]byte, r.Attr.Size)
	default:
		model = resize(r.Attr.Size)
		for _, g := range r.Ranges {
			clear(model[g.Off : g.Off+g.Len])
		}
	}
	placeExtents(model, r.Extents, r.Data)
	return model
}

// TestAddRangeMatchesABitmap: the dirty-range set, against a bitmap of
// the bytes marked, through random additions, merges past the bound and
// truncates: it always covers every byte marked, stays sorted and merged,
// and covers nothing else but the gaps mergeClosest chose to fill.
func TestAddRangeMatchesABitmap(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const size = 1 << 16
	for round := 0; round < 200; round++ {
		in := &inode{attr: Attr{Mode: syscall.S_IFREG | 0o644, Size: size}, dirty: true}
		marked := make([]bool, size)
		merged := 0
		for i := 0; i < 1+rng.IntN(150); i++ {
			if rng.IntN(20) == 0 {
				cut := uint64(rng.IntN(size))
				in.clampDirty(cut)
				clear(marked[cut:])
				continue
			}
			off, n := int64(rng.IntN(size)), int64(1+rng.IntN(300))
			before := len(in.dirtyRanges)
			in.addDirty(off, n)
			for k := off; k < min(off+n, size); k++ {
				marked[k] = true
			}
			if before == maxDirtyRanges && len(in.dirtyRanges) == maxDirtyRanges {
				merged++
			}
			if err := in.dirtyRangesErr(); err != nil {
				t.Fatalf("round %d: %v: %v", round, err, in.dirtyRanges)
			}
		}
		covered := make([]bool, size)
		for _, g := range in.dirtyRanges {
			for k := g.Off; k < g.Off+g.Len; k++ {
				covered[k] = true
			}
		}
		for k := range marked {
			if marked[k] && !covered[k] {
				t.Fatalf("round %d: byte %d marked but not in %v", round, k, in.dirtyRanges)
			}
			if covered[k] && !marked[k] && merged == 0 {
				t.Fatalf("round %d: byte %d in %v but never marked (no merge happened)", round, k, in.dirtyRanges)
			}
		}
	}
	in := &inode{attr: Attr{Mode: syscall.S_IFREG | 0o644, Size: 100}, dirty: true}
	for _, g := range [][2]int64{{10, 5}, {30, 5}, {15, 5}, {0, 2}, {2, 3}, {90, 50}} {
		in.addDirty(g[0], g[1])
	}
	if want := []Extent{{Off: 0, Len: 5}, {Off: 10, Len: 10}, {Off: 30, Len: 5}, {Off: 90, Len: 10}}; !reflect.DeepEqual(in.dirtyRanges, want) {
		t.Fatalf("ranges %v, want %v (merged where they touch, cut at the size)", in.dirtyRanges, want)
	}
}

// TestPartialRecordsReplayExact drives a file through random writes (at
// random places, appends, O_APPEND), hole punches, zeroed ranges,
// truncates both ways, fallocate growth, FLUSH and FSYNC, and replays
// every record it emits on a model, as a replica would: after each FLUSH
// the model equals the file, byte for byte, and every data record is
// partial and carries no more than the bytes changed since the last one.
func TestPartialRecordsReplayExact(t *testing.T) {
	h := newHarness(t, Config{})
	ino, fh := h.create(rootIno, "f")
	app := h.open(ino, syscall.O_WRONLY|syscall.O_APPEND)
	rng := rand.New(rand.NewPCG(7, 8))
	var model []byte
	var written, shipped uint64
	size := func() int64 { return int64(h.attr(ino).Size) }
	for step := 0; step < 400; step++ {
		switch k := rng.IntN(12); {
		case k < 4: // a write anywhere, past the end included
			off, n := rng.Int64N(size()+64<<10), 1+rng.IntN(70<<10)
			h.write(ino, fh, off, string(randBytes(rng, n)))
			written += uint64(n)
		case k < 6: // an append through O_APPEND (its offset is ignored)
			n := 1 + rng.IntN(20<<10)
			h.write(ino, app, 0, string(randBytes(rng, n)))
			written += uint64(n)
		case k == 6 || k == 7: // punch or zero a range
			mode := uint32(unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE)
			if k == 7 {
				mode = unix.FALLOC_FL_ZERO_RANGE
			}
			off, n := rng.Int64N(size()+1), 1+rng.Int64N(100<<10)
			e := h.errno(&fuseops.FallocateOp{Inode: id(ino), Handle: fuseops.HandleID(fh), Offset: uint64(off), Length: uint64(n), Mode: mode})
			if e != 0 && e != syscall.EOPNOTSUPP {
				t.Fatalf("fallocate mode %#x: %v", mode, e)
			}
		case k == 8: // truncate, down or up
			h.must(&fuseops.SetInodeAttributesOp{Inode: id(ino), Size: ptr(uint64(rng.Int64N(size() + 200<<10)))})
		case k == 9: // allocate past the end: the size grows, no byte changes
			h.must(&fuseops.FallocateOp{Inode: id(ino), Handle: fuseops.HandleID(fh), Offset: uint64(size()), Length: uint64(1 + rng.IntN(8192))})
		default:
			var op any = &fuseops.FlushFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)}
			if k == 10 {
				op = &fuseops.SyncFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)}
			}
			h.must(op)
			for _, r := range h.take() {
				if r.Ino != ino {
					continue
				}
				if r.Op == RecData {
					if !r.Partial {
						t.Fatalf("step %d: a whole data record", step)
					}
					shipped += uint64(len(r.Data))
				}
				model = replay(model, r)
			}
			if got := h.read(ino, fh, 0, int(size())); !bytes.Equal(model, []byte(got)) {
				t.Fatalf("step %d: the records replayed give %d bytes that differ from the file's %d", step, len(model), len(got))
			}
		}
	}
	t.Logf("written %d bytes, shipped %d in data records", written, shipped)
	if shipped > written {
		t.Fatalf("shipped %d bytes for %d written", shipped, written)
	}
}

// TestAppendShipsTheAppend: appending 64 KiB to a 4 MiB file ships 64
// KiB; a byte at 2 GiB in a new file ships one byte; a truncate past
// dirty ranges drops them.
func TestAppendShipsTheAppend(t *testing.T) {
	h := newHarness(t, Config{})
	ino, fh := h.create(rootIno, "big")
	h.write(ino, fh, 0, string(bytes.Repeat([]byte("m"), 4<<20)))
	h.take()
	h.must(&fuseops.FlushFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)})
	if r := h.take(); len(r) != 1 || len(r[0].Data) != 4<<20 {
		t.Fatalf("first record: %d records", len(r))
	}
	h.write(ino, fh, 4<<20, string(bytes.Repeat([]byte("a"), 64<<10)))
	h.must(&fuseops.FlushFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)})
	r := h.take()
	if len(r) != 1 || len(r[0].Data) != 64<<10 || !reflect.DeepEqual(r[0].Ranges, []Extent{{Off: 4 << 20, Len: 64 << 10}}) {
		t.Fatalf("append: %d bytes shipped in %v", len(r[0].Data), r[0].Ranges)
	}

	g, gh := h.create(rootIno, "sparse")
	h.write(g, gh, 2<<30, "x")
	h.take()
	h.must(&fuseops.FlushFileOp{Inode: id(g), Handle: fuseops.HandleID(gh)})
	if r := h.take(); len(r) != 1 || string(r[0].Data) != "x" || r[0].Attr.Size != 2<<30+1 {
		t.Fatalf("a byte at 2 GiB: %+v", r)
	}

	h.write(g, gh, 100, "abc")
	h.write(g, gh, 1<<30, "def")
	h.must(&fuseops.SetInodeAttributesOp{Inode: id(g), Size: ptr(uint64(101))})
	h.must(&fuseops.FlushFileOp{Inode: id(g), Handle: fuseops.HandleID(gh)})
	recs := h.take()
	r = recs[len(recs)-1:]
	if r[0].Op != RecData || string(r[0].Data) != "a" || !reflect.DeepEqual(r[0].Ranges, []Extent{{Off: 100, Len: 1}}) {
		t.Fatalf("after a truncate to 101: %q in %v", r[0].Data, r[0].Ranges)
	}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(1 + rng.IntN(255))
	}
	return b
}

// TestFollowPartialRecords: a follower applies partial data records (and
// rejects malformed ones): after random writes, punches and truncates,
// each FLUSH's records leave it holding the primary's volume.
func TestFollowPartialRecords(t *testing.T) {
	p, f := newFollowing(t)
	ino, fh := p.create(rootIno, "f")
	rng := rand.New(rand.NewPCG(9, 10))
	partial := 0
	for step := 0; step < 120; step++ {
		size := int64(p.attr(ino).Size)
		switch k := rng.IntN(6); k {
		case 0, 1, 2:
			p.write(ino, fh, rng.Int64N(size+32<<10), string(randBytes(rng, 1+rng.IntN(40<<10))))
		case 3:
			p.must(&fuseops.FallocateOp{Inode: id(ino), Handle: fuseops.HandleID(fh), Offset: uint64(rng.Int64N(size + 1)),
				Length: uint64(1 + rng.IntN(50<<10)), Mode: unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE})
		case 4:
			p.must(&fuseops.SetInodeAttributesOp{Inode: id(ino), Size: ptr(uint64(rng.Int64N(size + 100<<10)))})
		case 5:
			p.must(&fuseops.FlushFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)})
			recs := p.take()
			for _, r := range recs {
				if r.Partial {
					partial++
				}
			}
			follow(t, f, recs)
			sameContent(t, p.st, f.st, ino)
		}
	}
	if partial == 0 {
		t.Fatal("no partial record was followed")
	}
	p.must(&fuseops.FlushFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)})
	follow(t, f, p.take())
	next := f.st.AppliedLSN() + 1
	for _, r := range []Record{
		{LSN: next, Op: RecData, Ino: ino, Attr: Attr{Mode: syscall.S_IFREG | 0o644, Size: 10}, Partial: true, Ranges: []Extent{{Off: 5, Len: 6}}},
		{LSN: next, Op: RecData, Ino: ino, Attr: Attr{Mode: syscall.S_IFREG | 0o644, Size: 10}, Partial: true, Ranges: []Extent{{Off: 5, Len: 1}, {Off: 2, Len: 1}}},
		{LSN: next, Op: RecData, Ino: ino, Attr: Attr{Mode: syscall.S_IFREG | 0o644, Size: 10}, Partial: true, Ranges: []Extent{{Off: 0, Len: 2}}, Data: []byte("abc")},
		{LSN: next, Op: RecData, Ino: ino, Attr: Attr{Mode: syscall.S_IFREG | 0o644, Size: 10}, Ranges: []Extent{{Off: 0, Len: 2}}},
	} {
		if err := f.st.ApplyRecords([]Record{r}); !errors.Is(err, ErrBadRecord) {
			t.Fatalf("ranges %v, data %q, partial %v: %v, want ErrBadRecord", r.Ranges, r.Data, r.Partial, err)
		}
	}
	sameContent(t, p.st, f.st, ino)
}

// sameContent fails unless file ino has the same attributes and bytes in
// both states (the memfds' page layouts may differ: a punch on one, data
// of zeros on the other).
func sameContent(t *testing.T, want, got *State, ino uint64) {
	t.Helper()
	a, b := want.inodes[ino], got.inodes[ino]
	if a.attr != b.attr {
		t.Fatalf("inode %d: attributes %+v, want %+v", ino, b.attr, a.attr)
	}
	wb, gb := make([]byte, a.attr.Size), make([]byte, b.attr.Size)
	if err := want.readAt(a, wb, 0); err != nil {
		t.Fatal(err)
	}
	if err := got.readAt(b, gb, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(wb, gb) {
		i := 0
		for i < len(wb) && wb[i] == gb[i] {
			i++
		}
		t.Fatalf("inode %d: contents of %d bytes differ first at %d", ino, len(wb), i)
	}
}
