package replication

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	pb "github.com/spoolfs/spoolfs/proto"
	"google.golang.org/protobuf/proto"
)

// TestSnapshotChunking: a snapshot with a big file, a big directory and
// many xattrs crosses the wire in bounded messages and comes back equal.
func TestSnapshotChunking(t *testing.T) {
	snap := &Snapshot{LSN: 42, NextIno: 20_010}
	root := SnapInode{Ino: 1, Attr: dirAttr()}
	for i := 0; i < 20_000; i++ {
		root.Entries = append(root.Entries, SnapDirent{Name: fmt.Sprintf("queue-file-%06d", i), Ino: uint64(10 + i)})
	}
	big := bytes.Repeat([]byte("spool"), 700_000) // 3.5 MB
	xattrs := map[string][]byte{}
	for i := 0; i < 40; i++ {
		xattrs[fmt.Sprintf("user.x%d", i)] = bytes.Repeat([]byte{byte(i)}, 60<<10)
	}
	snap.Inodes = append(snap.Inodes, root, SnapInode{Ino: 2, Attr: fileAttr(len(big) + 100), Data: big, Xattrs: xattrs})
	for i := 0; i < 20_000; i++ {
		snap.Inodes = append(snap.Inodes, SnapInode{Ino: uint64(10 + i), Attr: fileAttr(0)})
	}
	snap.Inodes[0].Entries = append(snap.Inodes[0].Entries, SnapDirent{Name: "big", Ino: 2})

	asm := &snapAssembler{lim: Limits{}.withDefaults()}
	msgs, largest := 0, 0
	err := sendSnapshot(&pb.SnapshotHeader{Volume: vol, Term: 3, LastTerm: 2}, snap, func(c *pb.SnapshotChunk) error {
		msgs++
		largest = max(largest, proto.Size(c))
		return asm.add(c)
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hdr, got, err := asm.finish()
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Lsn != 42 || hdr.LastTerm != 2 || hdr.Inodes != uint64(len(snap.Inodes)) {
		t.Fatalf("header %v", hdr)
	}
	if !reflect.DeepEqual(got, snap) {
		t.Fatal("snapshot changed on the way")
	}
	if largest > chunkSize+64<<10 {
		t.Fatalf("a message of %d bytes, chunk size %d", largest, chunkSize)
	}
	t.Logf("%d messages, largest %d bytes", msgs, largest)
	if _, err := checkSnapshot(got, Limits{}.withDefaults()); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotFramingErrors(t *testing.T) {
	lim := Limits{MaxFileSize: 10}.withDefaults()
	cases := map[string][]*pb.SnapshotChunk{
		"no header":     {{Inodes: []*pb.SnapInode{{Ino: 1}}}},
		"two headers":   {{Header: &pb.SnapshotHeader{Inodes: 1}}, {Header: &pb.SnapshotHeader{}}},
		"stray cont":    {{Header: &pb.SnapshotHeader{Inodes: 1}, Inodes: []*pb.SnapInode{{Ino: 1, Cont: true}}}},
		"too many":      {{Header: &pb.SnapshotHeader{Inodes: 1}, Inodes: []*pb.SnapInode{{Ino: 1}, {Ino: 2}}}},
		"data too long": {{Header: &pb.SnapshotHeader{Inodes: 1}, Inodes: []*pb.SnapInode{{Ino: 1, Data: make([]byte, 11)}}}},
	}
	for name, chunks := range cases {
		asm := &snapAssembler{lim: lim}
		var err error
		for _, c := range chunks {
			if err = asm.add(c); err != nil {
				break
			}
		}
		if err == nil {
			_, _, err = asm.finish()
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestSnapshotContentRead: a snapshot whose file contents are read while
// it is sent (a streamed snapshot of the actor) crosses the wire as the
// same snapshot with the contents in it, the header counting their bytes;
// the snapshot itself keeps none of them, and a read that fails stops it.
func TestSnapshotContentRead(t *testing.T) {
	// Inode 5 is sparse, its extents more than one piece holds.
	var holey []Extent
	for i := range uint64(100_000) {
		holey = append(holey, Extent{Off: i * 8192, Len: 1})
	}
	full := &Snapshot{LSN: 7, NextIno: 6, Inodes: []SnapInode{
		{Ino: 1, Attr: dirAttr(), Entries: []SnapDirent{{Name: "a", Ino: 2}, {Name: "b", Ino: 3}, {Name: "e", Ino: 4}, {Name: "s", Ino: 5}}},
		{Ino: 2, Attr: fileAttr(3 << 20), Data: bytes.Repeat([]byte("a"), 3<<20)},
		{Ino: 3, Attr: fileAttr(5), Data: []byte("bbbbb")},
		{Ino: 4, Attr: fileAttr(0)},
		{Ino: 5, Attr: fileAttr(1 << 40), Data: bytes.Repeat([]byte("s"), len(holey)), Extents: holey},
	}}
	lazy := &Snapshot{LSN: full.LSN, NextIno: full.NextIno, Inodes: slices.Clone(full.Inodes)}
	reads := 0
	lazy.Content = func(ino uint64) ([]Extent, []byte, error) {
		reads++
		for _, in := range full.Inodes {
			if in.Ino == ino {
				return in.Extents, in.Data, nil
			}
		}
		return nil, nil, fmt.Errorf("no inode %d", ino)
	}
	for i := range lazy.Inodes {
		in := &lazy.Inodes[i]
		in.DataLen, in.Data, in.Extents = int64(len(in.Data)), nil, nil
	}
	asm := &snapAssembler{lim: Limits{}.withDefaults()}
	if err := sendSnapshot(&pb.SnapshotHeader{Volume: vol, Term: 3, LastTerm: 2}, lazy, asm.add, nil); err != nil {
		t.Fatal(err)
	}
	hdr, got, err := asm.finish()
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Bytes != 3<<20+5+uint64(len(holey)) || reads != 3 || !reflect.DeepEqual(got.Inodes, full.Inodes) {
		t.Fatalf("header bytes %d, %d reads, snapshot equal %v", hdr.Bytes, reads, reflect.DeepEqual(got.Inodes, full.Inodes))
	}
	for _, in := range lazy.Inodes {
		if in.Data != nil {
			t.Fatalf("inode %d: the sent content stayed in the snapshot", in.Ino)
		}
	}
	if _, err := checkSnapshot(got, asm.lim); err != nil {
		t.Fatal(err)
	}
	lazy.Content = func(uint64) ([]Extent, []byte, error) { return nil, nil, errors.New("actor stopped") }
	err = sendSnapshot(&pb.SnapshotHeader{Volume: vol}, lazy, func(*pb.SnapshotChunk) error { return nil }, nil)
	if err == nil || !strings.Contains(err.Error(), "actor stopped") {
		t.Fatalf("a failed read: %v", err)
	}
}
