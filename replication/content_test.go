package replication

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	pb "github.com/spoolfs/spoolfs/proto"
	"github.com/tidwall/buntdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// chunksOf lists file ino's stored chunks: index → bytes.
func chunksOf(t *testing.T, st *volStore, ino uint64) map[uint64]string {
	t.Helper()
	out := make(map[uint64]string)
	prefix := chunkPrefix(ino)
	err := st.mem.View(func(tx *buntdb.Tx) error {
		return tx.AscendGreaterOrEqual("", prefix, func(k, v string) bool {
			if !strings.HasPrefix(k, prefix) {
				return false
			}
			idx, err := parseChunkIdx(k[len(prefix):])
			if err != nil {
				t.Fatal(err)
			}
			out[idx] = v
			return true
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dense is a snapshot inode's content as bytes from offset 0 to its size
// (capped at max).
func dense(in *SnapInode, max uint64) []byte {
	b := make([]byte, min(in.Attr.Size, max))
	data := in.Data
	for _, e := range extentsOf(in.Extents, in.Data) {
		copy(b[min(e.Off, uint64(len(b))):], data[:e.Len])
		data = data[e.Len:]
	}
	return b
}

func fileOf(t *testing.T, st *volStore, ino uint64) *SnapInode {
	t.Helper()
	snap, _, err := st.readSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	for i := range snap.Inodes {
		if snap.Inodes[i].Ino == ino {
			return &snap.Inodes[i]
		}
	}
	t.Fatalf("no inode %d", ino)
	return nil
}

// TestDataRewritesOnlyChangedChunks: a data record states a file's whole
// content, but a replica writes (logs, on disk) only the chunks whose
// bytes changed: rewriting a 4 MiB file with one byte changed grows the
// file by about one chunk, not 4 MiB. (Before chunks, the log entry held
// the whole content again.)
func TestDataRewritesOnlyChangedChunks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.db")
	st := installBase(t, path)
	defer st.close()
	content := make([]byte, 4<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range content {
		content[i] = byte(rng.Uint32())
	}
	commitRecs(t, st, &Record{Term: 1, LSN: 1, Op: OpData, Ino: 3, Attr: fileAttr(len(content)), Data: content})
	before := fileSize(t, path)
	changed := bytes.Clone(content)
	changed[3<<20+5]++
	commitRecs(t, st, &Record{Term: 1, LSN: 2, Op: OpData, Ino: 3, Attr: fileAttr(len(changed)), Data: changed})
	if grew := fileSize(t, path) - before; grew > 2*contentChunk {
		t.Fatalf("a one-byte change grew the file by %d bytes", grew)
	}
	if got := dense(fileOf(t, st, 3), 1<<30); !bytes.Equal(got, changed) {
		t.Fatal("content differs after the rewrite")
	}
	if n := len(chunksOf(t, st, 3)); n != len(content)/contentChunk {
		t.Fatalf("%d chunks stored, want %d", n, len(content)/contentChunk)
	}
}

// TestTruncateCutsChunks: truncating drops the chunks past the new end and
// cuts the one it falls in, so that extending the file again reads zeros.
func TestTruncateCutsChunks(t *testing.T) {
	st := installBase(t, filepath.Join(t.TempDir(), "v.db"))
	defer st.close()
	content := bytes.Repeat([]byte{0xff}, 4<<20)
	commitRecs(t, st, &Record{Term: 1, LSN: 1, Op: OpData, Ino: 3, Attr: fileAttr(len(content)), Data: content})
	commitRecs(t, st, &Record{Term: 1, LSN: 2, Op: OpSetattr, Ino: 3, Attr: fileAttr(100_000)})
	chunks := chunksOf(t, st, 3)
	if len(chunks) != 2 || len(chunks[0]) != contentChunk || len(chunks[1]) != 100_000-contentChunk {
		t.Fatalf("after truncate to 100000: %d chunks, lengths %d and %d", len(chunks), len(chunks[0]), len(chunks[1]))
	}
	commitRecs(t, st, &Record{Term: 1, LSN: 3, Op: OpSetattr, Ino: 3, Attr: fileAttr(len(content))})
	want := make([]byte, len(content))
	copy(want, content[:100_000])
	if got := dense(fileOf(t, st, 3), 1<<30); !bytes.Equal(got, want) {
		t.Fatal("extended again: the cut tail does not read as zeros")
	}
	commitRecs(t, st, &Record{Term: 1, LSN: 4, Op: OpSetattr, Ino: 3, Attr: fileAttr(contentChunk)})
	if chunks := chunksOf(t, st, 3); len(chunks) != 1 || len(chunks[0]) != contentChunk {
		t.Fatalf("after truncate to one chunk: %d chunks", len(chunks))
	}
	commitRecs(t, st, &Record{Term: 1, LSN: 5, Op: OpSetattr, Ino: 3, Attr: fileAttr(0)})
	if chunks := chunksOf(t, st, 3); len(chunks) != 0 {
		t.Fatalf("after truncate to 0: %d chunks", len(chunks))
	}
}

// TestSparseDataCostsWhatWasWritten: one byte at 2 GiB is one chunk of one
// byte in memory and a log entry of a few hundred bytes on disk; Fetch and
// readSnapshot give it back as one extent; unlinking drops it.
func TestSparseDataCostsWhatWasWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.db")
	st := installBase(t, path)
	defer st.close()
	before := fileSize(t, path)
	rec := &Record{Term: 1, LSN: 1, Op: OpData, Ino: 3, Attr: fileAttr(2<<30 + 1), Data: []byte("x"), Extents: []Extent{{Off: 2 << 30, Len: 1}}}
	commitRecs(t, st, rec)
	if grew := fileSize(t, path) - before; grew > 4096 {
		t.Fatalf("one byte at 2 GiB grew the file by %d bytes", grew)
	}
	if chunks := chunksOf(t, st, 3); len(chunks) != 1 || chunks[2<<30/contentChunk] != "x" {
		t.Fatalf("chunks %v", chunks)
	}
	in := fileOf(t, st, 3)
	if string(in.Data) != "x" || !reflect.DeepEqual(in.Extents, rec.Extents) {
		t.Fatalf("snapshot content %q at %v", in.Data, in.Extents)
	}
	var fetched *SnapInode
	if err := st.eachInode(func(in *SnapInode) error {
		if in.Ino == 3 {
			fetched = in
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fetched, in) {
		t.Fatalf("fetched %+v, snapshot %+v", fetched, in)
	}
	commitRecs(t, st, &Record{Term: 1, LSN: 2, Op: OpUnlink, Ino: 3, Parent: 1, Name: "f"})
	if chunks := chunksOf(t, st, 3); len(chunks) != 0 {
		t.Fatalf("%d chunks left after the unlink", len(chunks))
	}
}

// TestChunksRoundTrip: random contents with holes, stored as chunks and
// read back, are the same bytes; all-zero chunks are not stored.
func TestChunksRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		size := uint64(1 + rng.IntN(6*contentChunk))
		var exts []Extent
		var data []byte
		aligned := func(off uint64) uint64 { // half the runs start a chunk
			if rng.IntN(2) == 0 {
				return (off + contentChunk - 1) / contentChunk * contentChunk
			}
			return off
		}
		for off := aligned(uint64(rng.IntN(3 * contentChunk))); off < size; {
			n := min(size-off, uint64(1+rng.IntN(2*contentChunk)))
			b := make([]byte, n)
			for i := range b {
				if rng.IntN(4) > 0 {
					b[i] = byte(rng.Uint32())
				}
			}
			exts, data = append(exts, Extent{Off: off, Len: n}), append(data, b...)
			off = aligned(off + n + uint64(rng.IntN(2*contentChunk)))
		}
		want := &SnapInode{Attr: fileAttr(int(size)), Data: data, Extents: exts}
		if err := checkContent(exts, len(data), size, Limits{}.withDefaults()); err != nil {
			t.Fatal(err)
		}
		got := &SnapInode{Attr: want.Attr}
		err := eachChunk(exts, data, func(idx uint64, chunk []byte) error {
			if len(chunk) > 0 && chunk[len(chunk)-1] == 0 {
				t.Fatalf("chunk %d ends in a zero", idx)
			}
			return addChunk(got, string(chunkKey(0, idx)[19:]), string(chunk))
		})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(dense(got, size), dense(want, size)) {
			t.Fatalf("content of size %d in %d extents changed through chunks", size, len(exts))
		}
		if err := checkContent(got.Extents, len(got.Data), size, Limits{}.withDefaults()); err != nil {
			t.Fatalf("read back: %v", err)
		}
	}
}

// TestShipExtentsFraming: extents and ranges arrive as (offset, length)
// pairs; an odd count or too many are rejected with InvalidArgument; a
// partial record's ranges are decoded (non-nil even when empty).
func TestShipExtentsFraming(t *testing.T) {
	lim := Limits{}.withDefaults()
	rec := func(mod func(*pb.Record)) *pb.ShipRequest {
		p := recordToPB(&Record{Term: 1, LSN: 1, Op: OpData, Ino: 3, Attr: fileAttr(100), Data: []byte("ab"), Extents: []Extent{{Off: 1, Len: 1}, {Off: 50, Len: 1}}}, chunkSize)
		mod(p)
		return &pb.ShipRequest{Records: []*pb.Record{p}}
	}
	recs, _, _, err := decodeShip(rec(func(*pb.Record) {}), nil, 0, lim)
	if err != nil || !reflect.DeepEqual(recs[0].Extents, []Extent{{Off: 1, Len: 1}, {Off: 50, Len: 1}}) {
		t.Fatalf("good record: %v %v", recs, err)
	}
	recs, _, _, err = decodeShip(rec(func(p *pb.Record) { p.Partial, p.Ranges = true, []uint64{0, 60} }), nil, 0, lim)
	if err != nil || !recs[0].Partial || !reflect.DeepEqual(recs[0].Ranges, []Extent{{Off: 0, Len: 60}}) {
		t.Fatalf("partial record: %v %v", recs, err)
	}
	recs, _, _, err = decodeShip(rec(func(p *pb.Record) { p.Partial, p.Extents, p.Data, p.DataLen = true, nil, nil, 0 }), nil, 0, lim)
	if err != nil || !recs[0].Partial || recs[0].Ranges == nil || len(recs[0].Ranges) != 0 {
		t.Fatalf("partial record of no range: %v %v", recs, err)
	}
	for name, mod := range map[string]func(*pb.Record){
		"odd":        func(p *pb.Record) { p.Extents = p.Extents[:3] },
		"odd ranges": func(p *pb.Record) { p.Partial, p.Ranges = true, []uint64{0} },
		"many":       func(p *pb.Record) { p.Extents = make([]uint64, 2*maxExtents+2) },
	} {
		_, _, _, err := decodeShip(rec(mod), nil, 0, lim)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestLegacyContentConverted: a file written before chunks (one c:<ino>
// key per file, in its compacted part or in a logged batch) opens with the
// same content, rewritten in chunks, and never again holds an old key.
func TestLegacyContentConverted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.db")
	st := installBase(t, path)
	m := commitRecs(t, st, createRec(1, 1, 4, 1, "big"))
	st.close()
	big := bytes.Repeat([]byte("b"), 3*contentChunk+7)
	db, err := buntdb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	// Compacted: file 3's content; logged: file 4's, as the old store wrote them.
	v := newView(nil)
	v.set("c:"+string(appendIno(nil, 4)), string(big))
	v.set(attrKey(4), encodeAttr(fileAttr(len(big))))
	m.LSN = 2
	v.set(keyMeta, m.encode())
	err = db.Update(func(tx *buntdb.Tx) error {
		if _, _, err := tx.Set("c:"+string(appendIno(nil, 3)), "hello", nil); err != nil {
			return err
		}
		_, _, err := tx.Set(logKey(2), v.encodeChanges(), nil)
		return err
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // converted, then opened as it is
		st = openTestStore(t, path)
		if st.meta.LSN != 2 || string(dense(fileOf(t, st, 3), 100)) != "hello" || !bytes.Equal(dense(fileOf(t, st, 4), 1<<20), big) {
			t.Fatalf("lsn %d, contents differ after conversion", st.meta.LSN)
		}
		st.close()
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte("c:"+string(appendIno(nil, 3))+"\r\n")) || bytes.Contains(raw, []byte(logPrefix)) {
			t.Fatal("the file still holds old content keys or log entries: not rewritten")
		}
	}
}

// TestInstallSparse: an install (written as it arrives) stores a sparse
// file's extents as chunks and reads back the same content; a file no
// directory names is dropped with its chunks.
func TestInstallSparse(t *testing.T) {
	c := makeCluster(t, 1)
	cl := c.rawClient(0)
	if resp, err := cl.Acquire(t.Context(), &pb.AcquireRequest{Volume: vol, Term: 2, NodeId: "raw"}); err != nil || !resp.Granted {
		t.Fatalf("acquire: %v %v", resp, err)
	}
	sparse := SnapInode{Ino: 2, Attr: fileAttr(2<<30 + 3), Data: []byte("abcxyz"), Extents: []Extent{{Off: 5, Len: 3}, {Off: 2 << 30, Len: 3}}}
	orphan := SnapInode{Ino: 3, Attr: Attr{Mode: modeReg | 0o644, Size: 1 << 30}, Data: []byte("orphan"), Extents: []Extent{{Off: 1 << 29, Len: 6}}}
	snap := &Snapshot{LSN: 4, NextIno: 4, Inodes: []SnapInode{
		{Ino: 1, Attr: dirAttr(), Entries: []SnapDirent{{Name: "s", Ino: 2}}}, sparse, orphan}}
	hdr := &pb.SnapshotHeader{Volume: vol, Term: 2, LastTerm: 2, NodeId: "raw"}
	if err := installSnapshot(t.Context(), cl, hdr, snap, nil); err != nil {
		t.Fatalf("install: %v", err)
	}
	got := c.snapshot(0, vol)
	// Chunks are stored from their start: the first extent reads back from 0.
	want := sparse
	want.Data, want.Extents = []byte("\x00\x00\x00\x00\x00abcxyz"), []Extent{{Off: 0, Len: 8}, {Off: 2 << 30, Len: 3}}
	if len(got.Inodes) != 2 || !reflect.DeepEqual(got.Inodes[1], want) {
		t.Fatalf("installed %+v", got.Inodes)
	}
	v, err := c.server(0).volume(vol, false)
	if err != nil {
		t.Fatal(err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if n := len(chunksOf(t, v.st, 3)); n != 0 {
		t.Fatalf("%d chunks of the unnamed file left", n)
	}
	if n := len(chunksOf(t, v.st, 2)); n != 2 {
		t.Fatalf("%d chunks of the sparse file, want 2", n)
	}
}
