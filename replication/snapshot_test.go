package replication

import (
	"bytes"
	"fmt"
	"reflect"
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
