package replication

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/spoolfs/spoolfs/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// partialRec is a partial data record of file ino in content: the ranges
// given, their non-zero runs as extents (zeros left out as holes).
func partialRec(lsn, ino uint64, content []byte, ranges ...Extent) *Record {
	r := &Record{Term: 1, LSN: lsn, Op: OpData, Ino: ino, Attr: fileAttr(len(content)), Partial: true, Ranges: ranges}
	for _, g := range ranges {
		for off := g.Off; off < g.Off+g.Len; {
			if content[off] == 0 {
				off++
				continue
			}
			end := off
			for end < g.Off+g.Len && content[end] != 0 {
				end++
			}
			r.Extents = append(r.Extents, Extent{Off: off, Len: end - off})
			r.Data = append(r.Data, content[off:end]...)
			off = end
		}
	}
	return r
}

// TestPartialApplyExact applies random partial data records (ranges
// across chunk boundaries, holes inside them, several ranges in one
// chunk) and truncates to a replica's store and compares the file with a
// model after each: every byte in the ranges is the record's, every byte
// outside them is what it was, the size is the record's.
func TestPartialApplyExact(t *testing.T) {
	st := installBase(t, filepath.Join(t.TempDir(), "v.db"))
	defer st.close()
	rng := rand.New(rand.NewPCG(3, 4))
	model := make([]byte, 5*contentChunk+123)
	for i := range model {
		model[i] = byte(rng.Uint32())
	}
	commitRecs(t, st, &Record{Term: 1, LSN: 1, Op: OpData, Ino: 3, Attr: fileAttr(len(model)), Data: model})
	for lsn := uint64(2); lsn < 200; lsn++ {
		if lsn%7 == 0 { // a size change travels as a setattr
			size := rng.IntN(8 * contentChunk)
			if size < len(model) {
				model = model[:size]
			} else {
				model = append(model, make([]byte, size-len(model))...)
			}
			commitRecs(t, st, &Record{Term: 1, LSN: lsn, Op: OpSetattr, Ino: 3, Attr: fileAttr(size)})
			continue
		}
		if grow := rng.IntN(3 * contentChunk); rng.IntN(3) == 0 { // a write past the end
			model = append(model, make([]byte, grow)...)
		}
		var ranges []Extent
		for off := uint64(rng.IntN(contentChunk)); off < uint64(len(model)); {
			n := min(uint64(1+rng.IntN(contentChunk+500)), uint64(len(model))-off)
			ranges = append(ranges, Extent{Off: off, Len: n})
			for i := off; i < off+n; i++ {
				switch rng.IntN(4) {
				case 0:
					model[i] = 0 // punched or zeroed
				case 1:
					model[i] = byte(rng.Uint32())
				}
			}
			off += n + 1 + uint64(rng.IntN(2*contentChunk))
		}
		r := partialRec(lsn, 3, model, ranges...)
		if err := checkRecordShape(r, Limits{}.withDefaults()); err != nil {
			t.Fatalf("lsn %d: %v", lsn, err)
		}
		commitRecs(t, st, r)
		if got := dense(fileOf(t, st, 3), 1<<30); !bytes.Equal(got, model) {
			t.Fatalf("lsn %d: content differs from the model (size %d, want %d)", lsn, len(got), len(model))
		}
		for idx, c := range chunksOf(t, st, 3) {
			if len(c) == 0 || c[len(c)-1] == 0 || idx*contentChunk+uint64(len(c)) > uint64(len(model)) {
				t.Fatalf("lsn %d: chunk %d of %d bytes is not trimmed or lies past the size", lsn, idx, len(c))
			}
		}
	}
}

// TestPartialRewritesOnlyTouchedChunks: a partial record of one byte in a
// 4 MiB file logs about one chunk; one byte at 2 GiB in a sparse file is
// one chunk of one byte; a range of zeros over a chunk deletes it.
func TestPartialRewritesOnlyTouchedChunks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.db")
	st := installBase(t, path)
	defer st.close()
	content := bytes.Repeat([]byte{7}, 4<<20)
	commitRecs(t, st, &Record{Term: 1, LSN: 1, Op: OpData, Ino: 3, Attr: fileAttr(len(content)), Data: content})
	before := fileSize(t, path)
	commitRecs(t, st, &Record{Term: 1, LSN: 2, Op: OpData, Ino: 3, Attr: fileAttr(len(content)), Partial: true,
		Ranges: []Extent{{Off: 3<<20 + 5, Len: 1}}, Extents: []Extent{{Off: 3<<20 + 5, Len: 1}}, Data: []byte{9}})
	if grew := fileSize(t, path) - before; grew > 2*contentChunk {
		t.Fatalf("a one-byte partial record grew the file by %d bytes", grew)
	}
	content[3<<20+5] = 9
	if got := dense(fileOf(t, st, 3), 1<<30); !bytes.Equal(got, content) {
		t.Fatal("content differs after a one-byte partial record")
	}

	big := uint64(2 << 30)
	commitRecs(t, st, &Record{Term: 1, LSN: 3, Op: OpData, Ino: 3, Attr: Attr{Mode: modeReg | 0o644, Nlink: 1, Size: big + 1}, Partial: true,
		Ranges: []Extent{{Off: big, Len: 1}}, Extents: []Extent{{Off: big, Len: 1}}, Data: []byte{1}})
	chunks := chunksOf(t, st, 3)
	if len(chunks) != len(content)/contentChunk+1 || chunks[big/contentChunk] != "\x01" {
		t.Fatalf("one byte at 2 GiB: %d chunks, the last %q", len(chunks), chunks[big/contentChunk])
	}
	commitRecs(t, st, &Record{Term: 1, LSN: 4, Op: OpData, Ino: 3, Attr: Attr{Mode: modeReg | 0o644, Nlink: 1, Size: big + 1}, Partial: true,
		Ranges: []Extent{{Off: contentChunk, Len: contentChunk}}})
	if _, ok := chunksOf(t, st, 3)[1]; ok {
		t.Fatal("a range of zeros over a whole chunk left the chunk stored")
	}
}

// TestPartialRecordsRejected: malformed partial records are rejected with
// InvalidArgument before anything changes.
func TestPartialRecordsRejected(t *testing.T) {
	lim := Limits{}.withDefaults()
	data := func(partial bool, ranges, exts []Extent, d string) *Record {
		return &Record{LSN: 2, Op: OpData, Ino: 3, Attr: fileAttr(100), Partial: partial, Ranges: ranges, Extents: exts, Data: []byte(d)}
	}
	cases := []struct {
		name string
		rec  *Record
		want string
	}{
		{"unsorted", data(true, []Extent{{Off: 50, Len: 1}, {Off: 10, Len: 1}}, nil, ""), "overlaps or touches"},
		{"overlap", data(true, []Extent{{Off: 10, Len: 5}, {Off: 12, Len: 5}}, nil, ""), "overlaps or touches"},
		{"touching", data(true, []Extent{{Off: 10, Len: 5}, {Off: 15, Len: 5}}, nil, ""), "overlaps or touches"},
		{"empty range", data(true, []Extent{{Off: 10, Len: 0}}, nil, ""), "is empty"},
		{"beyond size", data(true, []Extent{{Off: 90, Len: 11}}, nil, ""), "beyond size 100"},
		{"wraps", data(true, []Extent{{Off: 1 << 63, Len: 1<<63 + 2}}, nil, ""), "beyond size"},
		{"extent outside", data(true, []Extent{{Off: 10, Len: 5}}, []Extent{{Off: 20, Len: 1}}, "x"), "not inside"},
		{"extent across two", data(true, []Extent{{Off: 10, Len: 5}, {Off: 16, Len: 5}}, []Extent{{Off: 14, Len: 3}}, "xyz"), "not inside"},
		{"dense data outside", data(true, []Extent{{Off: 10, Len: 5}}, nil, "ab"), "not inside"},
		{"data short", data(true, []Extent{{Off: 10, Len: 5}}, []Extent{{Off: 10, Len: 2}}, "x"), "extents hold 2 bytes"},
		{"ranges not partial", data(false, []Extent{{Off: 10, Len: 5}}, nil, ""), "not partial"},
		{"partial setattr", &Record{LSN: 2, Op: OpSetattr, Ino: 3, Attr: fileAttr(100), Partial: true}, "unexpected extents or ranges"},
	}
	for _, tc := range cases {
		err := checkRecordShape(tc.rec, lim)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.want) {
			t.Errorf("%s: got %v, want InvalidArgument containing %q", tc.name, err, tc.want)
		}
	}
	good := data(true, []Extent{{Off: 0, Len: 5}, {Off: 10, Len: 90}}, []Extent{{Off: 1, Len: 2}, {Off: 99, Len: 1}}, "abc")
	if err := checkRecordShape(good, lim); err != nil {
		t.Fatalf("good partial record: %v", err)
	}
	if err := checkRecordShape(data(true, nil, nil, ""), lim); err != nil {
		t.Fatalf("partial record of no range: %v", err)
	}
}

// TestFetchSendsLargeFileInPieces: a replica's Fetch (recovery, dump)
// sends a large file as pieces of at most about chunkSize per message,
// never one message, and the pieces add up to the file; the primary's
// records of it (partial ones included) arrive whole.
func TestFetchSendsLargeFileInPieces(t *testing.T) {
	c := makeCluster(t, 1)
	cfg := c.primaryConfig("v")
	cfg.W = 1
	p, m := c.openPrimary(cfg)
	content := bytes.Repeat([]byte("0123456789abcdef"), (5<<20+5)/16)
	ino, _ := m.writeFile(RootIno, "big", content)
	tail := []byte("appended by a partial record")
	grown := append(bytes.Clone(content), tail...)
	lsn := m.append(partialRec(0, ino, grown, Extent{Off: uint64(len(content)), Len: uint64(len(tail))}))
	mustWait(t, p, lsn, 20*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := c.rawClient(0).Fetch(ctx, &pb.FetchRequest{Volume: "v", ProtocolVersion: ProtocolVersion})
	if err != nil {
		t.Fatal(err)
	}
	asm := &snapAssembler{lim: Limits{}.withDefaults()}
	msgs, largest := 0, 0
	for {
		ch, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		msgs++
		largest = max(largest, proto.Size(ch))
		if err := asm.add(ch); err != nil {
			t.Fatal(err)
		}
	}
	_, snap, err := asm.finish()
	if err != nil {
		t.Fatal(err)
	}
	if largest > chunkSize+64<<10 || msgs < len(grown)/chunkSize {
		t.Fatalf("%d messages, the largest %d bytes: want pieces of about %d", msgs, largest, chunkSize)
	}
	for i := range snap.Inodes {
		if in := &snap.Inodes[i]; in.Ino == ino && !bytes.Equal(dense(in, 1<<30), grown) {
			t.Fatal("the fetched file differs from what was written")
		}
	}
	t.Logf("a %d-byte file fetched in %d messages, the largest %d bytes", len(grown), msgs, largest)
}
