package replication

import (
	"bytes"
	"reflect"
	"testing"

	pb "github.com/spoolfs/spoolfs/proto"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// fuzzVolume is an in-memory volume holding baseSnapshot at lsn 0 of
// term 1, accepted term 1.
func fuzzVolume(t *testing.T) *volume {
	st, err := openVolStore("", 0, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	snap, err := checkSnapshot(baseSnapshot(), Limits{}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.install(snap, meta{LastTerm: 1, NextIno: snap.NextIno, Initialized: true}); err != nil {
		t.Fatal(err)
	}
	return &volume{name: "fuzz", st: st, accepted: 1}
}

func fuzzSeeds() []*pb.ShipRequest {
	rec := func(r *Record) *pb.Record { r.Term = 1; return recordToPB(r, chunkSize) }
	return []*pb.ShipRequest{
		{Records: []*pb.Record{rec(&Record{LSN: 1, Op: OpCreate, Ino: 4, Parent: 1, Name: "new", Attr: fileAttr(0)})}},
		{Records: []*pb.Record{
			rec(&Record{LSN: 1, Op: OpCreate, Ino: 4, Parent: 2, Name: "x", Attr: fileAttr(0)}),
			rec(&Record{LSN: 2, Op: OpData, Ino: 4, Attr: fileAttr(3), Data: []byte("abc")}),
			rec(&Record{LSN: 3, Op: OpRename, Ino: 4, Parent: 2, Name: "x", NewParent: 1, NewName: "f", Replaced: 3}),
		}},
		{Records: []*pb.Record{rec(&Record{LSN: 1, Op: OpUnlink, Ino: 3, Parent: 1, Name: "f"})}},
		{Records: []*pb.Record{rec(&Record{LSN: 1, Op: OpRmdir, Ino: 2, Parent: 1, Name: "d"})}},
		{Records: []*pb.Record{rec(&Record{LSN: 1, Op: OpLink, Ino: 3, Parent: 2, Name: "l", Attr: fileAttr(5)})}},
		{Records: []*pb.Record{rec(&Record{LSN: 1, Op: OpSetattr, Ino: 3, Attr: fileAttr(2)})}},
		{Records: []*pb.Record{rec(&Record{LSN: 1, Op: OpSetXattr, Ino: 2, XattrName: "user.x", Data: []byte("v")})}},
		{Records: []*pb.Record{rec(&Record{LSN: 1, Op: OpRemoveXattr, Ino: 3, XattrName: "user.a"})}},
		{Records: []*pb.Record{rec(&Record{LSN: 1, Op: OpCreate, Ino: 9, Parent: 1, Name: "s", Target: "/t", Attr: Attr{Mode: modeLnk | 0o777, Nlink: 1}})}},
		{Records: []*pb.Record{rec(&Record{LSN: 1, Op: OpRename, Ino: 2, Parent: 1, Name: "d", NewParent: 1, NewName: "e"})}},
		{Records: []*pb.Record{rec(&Record{LSN: 2, Op: OpCreate, Ino: 4, Parent: 1, Name: "gap", Attr: fileAttr(0)})}},
		{Records: []*pb.Record{rec(&Record{LSN: 1, Op: OpData, Ino: 3, Attr: fileAttr(1 << 31), Data: []byte("abz"), Extents: []Extent{{Off: 7, Len: 2}, {Off: 1 << 30, Len: 1}}})}},
		{Records: []*pb.Record{
			rec(&Record{LSN: 1, Op: OpData, Ino: 3, Attr: fileAttr(200000), Data: bytes.Repeat([]byte("q"), 70000), Extents: []Extent{{Off: 100000, Len: 70000}}}),
			rec(&Record{LSN: 2, Op: OpSetattr, Ino: 3, Attr: fileAttr(120000)}),
		}},
		{MoreData: []byte("stray")},
	}
}

// FuzzApply feeds arbitrary bytes to the replica's decode, validate and
// apply path: it must never panic, a rejected message must change
// nothing, and an accepted one must leave a well-formed volume.
func FuzzApply(f *testing.F) {
	for _, s := range fuzzSeeds() {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xff, 0x01, 0x12})
	lim := Limits{MaxFileSize: 1 << 20}.withDefaults()
	f.Fuzz(func(t *testing.T, b []byte) {
		var req pb.ShipRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			return // the transport rejects it (codes.Internal) before us
		}
		v := fuzzVolume(t)
		before, m0, err := v.st.readSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		recs, _, _, err := decodeShip(&req, nil, 0, lim)
		if err == nil && len(recs) > 0 {
			_, err = v.applyBatch(recs, lim, nopReplicaObserver{}, zap.NewNop())
		}
		after, m1, rerr := v.st.readSnapshot()
		if rerr != nil {
			t.Fatal(rerr)
		}
		if err != nil {
			if !reflect.DeepEqual(before, after) || m0 != m1 {
				t.Fatalf("rejected (%v) but the volume changed", err)
			}
			return
		}
		if m1.LSN < m0.LSN {
			t.Fatalf("lsn went back from %d to %d", m0.LSN, m1.LSN)
		}
		if _, err := checkSnapshot(after, lim); err != nil {
			t.Fatalf("accepted records left a broken volume: %v", err)
		}
	})
}
