package replication

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
	pb "github.com/spoolfs/spoolfs/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const vol = "spool"

// baseSnapshot: the root, directory "d" (2) and file "f" (3) with "hello".
func baseSnapshot() *Snapshot {
	return &Snapshot{LSN: 0, NextIno: 4, Inodes: []SnapInode{
		{Ino: 1, Attr: dirAttr(), Entries: []SnapDirent{{Name: "d", Ino: 2}, {Name: "f", Ino: 3}}},
		{Ino: 2, Attr: dirAttr()},
		{Ino: 3, Attr: fileAttr(5), Data: []byte("hello"), Xattrs: map[string][]byte{"user.a": []byte("1")}},
	}}
}

// setupVolume acquires term on replica i and installs baseSnapshot.
func setupVolume(t *testing.T, c *testCluster, i int, term uint64) pb.ReplicaClient {
	t.Helper()
	cl := c.rawClient(i)
	ctx := context.Background()
	resp, err := cl.Acquire(ctx, &pb.AcquireRequest{Volume: vol, Term: term, NodeId: "raw"})
	if err != nil || !resp.Granted {
		t.Fatalf("acquire: %v %v", resp, err)
	}
	hdr := &pb.SnapshotHeader{Volume: vol, Term: term, LastTerm: term, NodeId: "raw"}
	if err := installSnapshot(ctx, cl, hdr, baseSnapshot(), nil); err != nil {
		t.Fatalf("install: %v", err)
	}
	return cl
}

func openShip(t *testing.T, cl pb.ReplicaClient, term uint64) (pb.Replica_ShipClient, *pb.Ack) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := cl.Ship(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&pb.ShipRequest{Header: &pb.ShipHeader{Volume: vol, Term: term, NodeId: "raw"}}); err != nil {
		t.Fatal(err)
	}
	ack, err := s.Recv()
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return s, ack
}

func sendRecs(t *testing.T, s pb.Replica_ShipClient, recs ...*Record) {
	t.Helper()
	msg := &pb.ShipRequest{}
	for _, r := range recs {
		msg.Records = append(msg.Records, recordToPB(r, chunkSize))
	}
	if err := s.Send(msg); err != nil {
		t.Fatal(err)
	}
}

func createRec(term, lsn, ino, parent uint64, name string) *Record {
	return &Record{Term: term, LSN: lsn, Op: OpCreate, Ino: ino, Parent: parent, Name: name, Attr: fileAttr(0)}
}

func TestShipHandshakeReportsPosition(t *testing.T) {
	c := makeCluster(t, 1)
	cl := setupVolume(t, c, 0, 3)
	_, ack := openShip(t, cl, 3)
	if ack.DurableLsn != 0 || ack.LastTerm != 3 || !ack.Initialized || ack.AcceptedTerm != 3 {
		t.Fatalf("handshake ack %v", ack)
	}
}

// TestGroupCommit: records that arrive while the applier is busy are
// committed together: one write and one fsync for the lot.
func TestGroupCommit(t *testing.T) {
	c := makeCluster(t, 1)
	cl := setupVolume(t, c, 0, 1)
	srv := c.server(0)
	before := c.status(0, vol).Commits
	release := make(chan struct{})
	hook := func() { <-release }
	srv.hookBeforeApply.Store(&hook)
	s, _ := openShip(t, cl, 1)
	const n = 50
	for i := uint64(1); i <= n; i++ {
		sendRecs(t, s, createRec(1, i, 3+i, 1, "m"+string(rune('A'+i))))
	}
	testsupport.WaitFor(t, 10*time.Second, "all records received", func() bool { return srv.received.Load() == n })
	close(release)
	ack, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if ack.DurableLsn != n {
		t.Fatalf("ack at lsn %d, want %d in one batch", ack.DurableLsn, n)
	}
	if got := c.status(0, vol).Commits - before; got != 1 {
		t.Fatalf("%d commits for %d records, want 1", got, n)
	}
}

// TestGapReportedAndResent: a record past the next lsn is not applied; the
// ack reports the position once; resending from there fills the gap.
func TestGapReportedAndResent(t *testing.T) {
	c := makeCluster(t, 1)
	cl := setupVolume(t, c, 0, 1)
	s, _ := openShip(t, cl, 1)
	sendRecs(t, s, createRec(1, 1, 4, 1, "a"), createRec(1, 2, 5, 1, "b"))
	if ack, _ := s.Recv(); ack.DurableLsn != 2 || ack.Gap {
		t.Fatalf("ack %v", ack)
	}
	sendRecs(t, s, createRec(1, 4, 7, 1, "dd"))
	ack, err := s.Recv()
	if err != nil || !ack.Gap || ack.DurableLsn != 2 {
		t.Fatalf("want a gap at 2, got %v %v", ack, err)
	}
	sendRecs(t, s, createRec(1, 5, 8, 1, "e")) // still past the gap: dropped silently
	sendRecs(t, s, createRec(1, 3, 6, 1, "c"), createRec(1, 4, 7, 1, "dd"), createRec(1, 5, 8, 1, "e"))
	ack, err = s.Recv()
	if err != nil || ack.Gap || ack.DurableLsn != 5 {
		t.Fatalf("want lsn 5 after the resend, got %v %v", ack, err)
	}
	sendRecs(t, s, createRec(1, 4, 7, 1, "dd")) // a duplicate: ignored
	if ack, err = s.Recv(); err != nil || ack.DurableLsn != 5 {
		t.Fatalf("duplicate: %v %v", ack, err)
	}
	snap := c.snapshot(0, vol)
	for _, name := range []string{"a", "b", "c", "dd", "e"} {
		if _, ok := find(snap, name); !ok {
			t.Errorf("%s missing", name)
		}
	}
}

// TestReplicaRestartResumesFromDisk: position, term and state survive a
// restart.
func TestReplicaRestartResumesFromDisk(t *testing.T) {
	c := makeCluster(t, 1)
	cl := setupVolume(t, c, 0, 2)
	s, _ := openShip(t, cl, 2)
	big := strings.Repeat("x", 3*chunkSize+17)
	sendRecs(t, s, createRec(2, 1, 4, 1, "a"))
	r := &Record{Term: 2, LSN: 2, Op: OpData, Ino: 4, Attr: fileAttr(len(big)), Data: []byte(big)}
	if err := sendRecords(s, []*Record{r}); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 10*time.Second, "lsn 2", func() bool { return c.status(0, vol).Lsn == 2 })
	before := c.snapshot(0, vol)
	c.kill(0)
	c.restart(0)
	st := c.status(0, vol)
	if st.Lsn != 2 || st.LastTerm != 2 || st.AcceptedTerm != 2 || !st.Initialized {
		t.Fatalf("after restart: %v", st)
	}
	after := c.snapshot(0, vol)
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("state changed across restart")
	}
	if in, ok := find(after, "a"); !ok || string(in.Data) != big {
		t.Fatalf("big file lost")
	}
	resp, err := c.rawClient(0).Acquire(context.Background(), &pb.AcquireRequest{Volume: vol, Term: 2, NodeId: "other"})
	if err != nil || resp.Granted {
		t.Fatalf("term 2 granted again after restart: %v %v", resp, err)
	}
}

// TestBadRecordsRejected: each bad record is refused with a clear status
// and changes nothing, even the valid records before it in its batch.
func TestBadRecordsRejected(t *testing.T) {
	c := makeCluster(t, 1, WithLimits(Limits{MaxFileSize: 1 << 20}))
	cl := setupVolume(t, c, 0, 5)
	good := createRec(5, 1, 4, 1, "ok")
	cases := []struct {
		name string
		rec  *Record
		code codes.Code
		want string
	}{
		{"slash", createRec(5, 2, 5, 1, "a/b"), codes.InvalidArgument, "'/'"},
		{"dot", createRec(5, 2, 5, 1, "."), codes.InvalidArgument, "reserved"},
		{"dotdot", createRec(5, 2, 5, 1, ".."), codes.InvalidArgument, "reserved"},
		{"nul", createRec(5, 2, 5, 1, "a\x00b"), codes.InvalidArgument, "NUL"},
		{"long", createRec(5, 2, 5, 1, strings.Repeat("n", 256)), codes.InvalidArgument, "exceeds 255"},
		{"empty", createRec(5, 2, 5, 1, ""), codes.InvalidArgument, "empty name"},
		{"unknown parent", createRec(5, 2, 5, 99, "x"), codes.FailedPrecondition, "inode 99 does not exist"},
		{"parent not dir", createRec(5, 2, 5, 3, "x"), codes.FailedPrecondition, "not a directory"},
		{"exists", createRec(5, 2, 5, 1, "f"), codes.FailedPrecondition, "exists"},
		{"reused ino", createRec(5, 2, 3, 1, "x"), codes.FailedPrecondition, "not new"},
		{"unknown op", &Record{Term: 5, LSN: 2, Op: 42, Ino: 3}, codes.InvalidArgument, "unknown op"},
		{"data unknown ino", &Record{Term: 5, LSN: 2, Op: OpData, Ino: 77, Attr: fileAttr(1), Data: []byte("x")}, codes.FailedPrecondition, "does not exist"},
		{"data to dir", &Record{Term: 5, LSN: 2, Op: OpData, Ino: 2, Attr: fileAttr(1), Data: []byte("x")}, codes.FailedPrecondition, "not a regular file"},
		{"data beyond size", &Record{Term: 5, LSN: 2, Op: OpData, Ino: 3, Attr: fileAttr(0), Data: []byte("x")}, codes.InvalidArgument, "beyond size 0"},
		{"extents unsorted", &Record{Term: 5, LSN: 2, Op: OpData, Ino: 3, Attr: fileAttr(100), Data: []byte("ab"), Extents: []Extent{{Off: 50, Len: 1}, {Off: 10, Len: 1}}}, codes.InvalidArgument, "precedes"},
		{"extents overlap", &Record{Term: 5, LSN: 2, Op: OpData, Ino: 3, Attr: fileAttr(100), Data: []byte("abcdef"), Extents: []Extent{{Off: 10, Len: 5}, {Off: 12, Len: 1}}}, codes.InvalidArgument, "overlaps"},
		{"extent beyond size", &Record{Term: 5, LSN: 2, Op: OpData, Ino: 3, Attr: fileAttr(100), Data: []byte("ab"), Extents: []Extent{{Off: 99, Len: 2}}}, codes.InvalidArgument, "beyond size 100"},
		{"extent wraps", &Record{Term: 5, LSN: 2, Op: OpData, Ino: 3, Attr: fileAttr(100), Data: []byte("ab"), Extents: []Extent{{Off: 1 << 63, Len: 1<<63 + 2}}}, codes.InvalidArgument, "beyond size"},
		{"extent empty", &Record{Term: 5, LSN: 2, Op: OpData, Ino: 3, Attr: fileAttr(100), Data: []byte("a"), Extents: []Extent{{Off: 0, Len: 0}, {Off: 5, Len: 1}}}, codes.InvalidArgument, "is empty"},
		{"extents short of data", &Record{Term: 5, LSN: 2, Op: OpData, Ino: 3, Attr: fileAttr(100), Data: []byte("abc"), Extents: []Extent{{Off: 0, Len: 2}}}, codes.InvalidArgument, "extents hold 2 bytes, data has 3"},
		{"partial extent outside its ranges", &Record{Term: 5, LSN: 2, Op: OpData, Ino: 3, Attr: fileAttr(100), Partial: true, Ranges: []Extent{{Off: 0, Len: 10}}, Data: []byte("ab"), Extents: []Extent{{Off: 20, Len: 2}}}, codes.InvalidArgument, "not inside"},
		{"partial ranges unsorted", &Record{Term: 5, LSN: 2, Op: OpData, Ino: 3, Attr: fileAttr(100), Partial: true, Ranges: []Extent{{Off: 50, Len: 1}, {Off: 10, Len: 1}}}, codes.InvalidArgument, "overlaps or touches"},
		{"extents on setattr", &Record{Term: 5, LSN: 2, Op: OpSetattr, Ino: 3, Attr: fileAttr(100), Extents: []Extent{{Off: 0, Len: 1}}}, codes.InvalidArgument, "unexpected extents"},
		{"rmdir not empty", &Record{Term: 5, LSN: 2, Op: OpRmdir, Ino: 2, Parent: 1, Name: "d"}, codes.FailedPrecondition, "not empty"},
		{"oversized", &Record{Term: 5, LSN: 2, Op: OpData, Ino: 3, Attr: fileAttr(2 << 20), Data: make([]byte, 2<<20)}, codes.InvalidArgument, "exceeds the limit"},
		{"type change", &Record{Term: 5, LSN: 2, Op: OpSetattr, Ino: 3, Attr: dirAttr()}, codes.FailedPrecondition, "changes type"},
		{"bad mode", &Record{Term: 5, LSN: 2, Op: OpSetattr, Ino: 3, Attr: Attr{Mode: 0o644}}, codes.InvalidArgument, "no valid file type"},
		{"unlink wrong ino", &Record{Term: 5, LSN: 2, Op: OpUnlink, Ino: 2, Parent: 1, Name: "f"}, codes.FailedPrecondition, "is inode 3"},
		{"rmdir root", &Record{Term: 5, LSN: 2, Op: OpRmdir, Ino: 1, Parent: 1, Name: "d"}, codes.FailedPrecondition, "the root"},
		{"rename into itself", &Record{Term: 5, LSN: 2, Op: OpRename, Ino: 2, Parent: 1, Name: "d", NewParent: 2, NewName: "x"}, codes.FailedPrecondition, "inside itself"},
		{"rename bad replaced", &Record{Term: 5, LSN: 2, Op: OpRename, Ino: 3, Parent: 1, Name: "f", NewParent: 1, NewName: "d", Replaced: 9}, codes.FailedPrecondition, "record says 9"},
		{"rename dir over file", &Record{Term: 5, LSN: 2, Op: OpRename, Ino: 2, Parent: 1, Name: "d", NewParent: 1, NewName: "f", Replaced: 3}, codes.FailedPrecondition, "differ"},
		{"removexattr missing", &Record{Term: 5, LSN: 2, Op: OpRemoveXattr, Ino: 3, XattrName: "user.zz"}, codes.FailedPrecondition, "no xattr"},
		{"xattr too big", &Record{Term: 5, LSN: 2, Op: OpSetXattr, Ino: 3, XattrName: "user.b", Data: make([]byte, 70<<10)}, codes.InvalidArgument, "exceeds the limit"},
		{"stale term", createRec(4, 2, 5, 1, "x"), codes.FailedPrecondition, "fenced: term 4 < accepted 5"},
		{"future term", createRec(6, 2, 5, 1, "x"), codes.FailedPrecondition, "not acquired"},
		{"other history", createRec(3, 1, 5, 1, "x"), codes.FailedPrecondition, "fenced"},
	}
	s, _ := openShip(t, cl, 5)
	sendRecs(t, s, good)
	if ack, err := s.Recv(); err != nil || ack.DurableLsn != 1 {
		t.Fatalf("good record: %v %v", ack, err)
	}
	before := c.snapshot(0, vol)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := openShip(t, cl, 5)
			ok := createRec(5, 2, 50, 2, "valid-before-the-bad-one") // makes d non-empty
			bad := *tc.rec
			if bad.LSN == 2 {
				bad.LSN = 3
				if bad.Op == OpCreate && bad.Ino == 5 {
					bad.Ino = 51
				}
				sendRecs(t, s, ok, &bad)
			} else {
				sendRecs(t, s, &bad)
			}
			_, err := s.Recv()
			st := status.Convert(err)
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.want) {
				t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), tc.code, tc.want)
			}
			if got := c.status(0, vol).Lsn; got != 1 {
				t.Fatalf("lsn moved to %d", got)
			}
			if !reflect.DeepEqual(before, c.snapshot(0, vol)) {
				t.Fatalf("state changed")
			}
		})
	}
}

// rawCodec sends bytes as they are, so a test can put garbage on the wire.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.([]byte); ok {
		return b, nil
	}
	return proto.Marshal(v.(proto.Message))
}
func (rawCodec) Unmarshal(data []byte, v any) error { return proto.Unmarshal(data, v.(proto.Message)) }
func (rawCodec) Name() string                       { return "proto" }

func TestGarbageOnTheWireRejected(t *testing.T) {
	c := makeCluster(t, 1)
	setupVolume(t, c, 0, 1)
	before := c.snapshot(0, vol)
	conn, err := grpc.NewClient(c.reps[0].addr, append(DialOptions(), grpc.WithTransportCredentials(insecureCreds()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	desc := &grpc.StreamDesc{StreamName: "Ship", ServerStreams: true, ClientStreams: true}
	s, err := conn.NewStream(context.Background(), desc, pb.Replica_Ship_FullMethodName, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMsg(&pb.ShipRequest{Header: &pb.ShipHeader{Volume: vol, Term: 1, NodeId: "raw"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecvMsg(&pb.Ack{}); err != nil {
		t.Fatal(err)
	}
	if err := s.SendMsg([]byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x99}); err != nil {
		t.Fatal(err)
	}
	err = s.RecvMsg(&pb.Ack{})
	if st := status.Convert(err); st.Code() != codes.Internal || !strings.Contains(st.Message(), "unmarshal") {
		t.Fatalf("garbage: got %v", err)
	}
	if !reflect.DeepEqual(before, c.snapshot(0, vol)) || c.status(0, vol).Lsn != 0 {
		t.Fatal("garbage changed the volume")
	}
}

func TestInstallRejectsBadSnapshots(t *testing.T) {
	c := makeCluster(t, 1)
	cl := setupVolume(t, c, 0, 2)
	before := c.snapshot(0, vol)
	cases := map[string]func(s *Snapshot){
		"no root":        func(s *Snapshot) { s.Inodes = s.Inodes[1:] },
		"dangling entry": func(s *Snapshot) { s.Inodes[0].Entries = append(s.Inodes[0].Entries, SnapDirent{Name: "z", Ino: 3000}) },
		"dir twice": func(s *Snapshot) {
			s.Inodes[0].Entries = append(s.Inodes[0].Entries, SnapDirent{Name: "d2", Ino: 2})
		},
		"cycle": func(s *Snapshot) {
			s.Inodes[0].Entries = s.Inodes[0].Entries[1:]
			s.Inodes[1].Entries = []SnapDirent{{Name: "self", Ino: 2}}
		},
		"bad name":         func(s *Snapshot) { s.Inodes[0].Entries[0].Name = "a/b" },
		"ino >= next":      func(s *Snapshot) { s.NextIno = 3 },
		"data beyond size": func(s *Snapshot) { s.Inodes[2].Data = []byte("hello!") },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			snap := baseSnapshot()
			mutate(snap)
			err := installSnapshot(context.Background(), cl, &pb.SnapshotHeader{Volume: vol, Term: 2, LastTerm: 2, NodeId: "raw"}, snap, nil)
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("got %v, want InvalidArgument", err)
			}
			if !reflect.DeepEqual(before, c.snapshot(0, vol)) {
				t.Fatal("state changed")
			}
		})
	}
	err := installSnapshot(context.Background(), cl, &pb.SnapshotHeader{Volume: vol, Term: 1, LastTerm: 1, NodeId: "raw"}, baseSnapshot(), nil)
	if !isFenced(err) {
		t.Fatalf("install under an old term: %v", err)
	}
}

// TestOnlyTheHolderWrites: records and snapshots of the accepted term come
// from the holder that acquired it; another node naming the same term is
// refused with PermissionDenied and changes nothing.
func TestOnlyTheHolderWrites(t *testing.T) {
	c := makeCluster(t, 1)
	cl := setupVolume(t, c, 0, 1) // held by "raw"
	before := c.status(0, vol)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := cl.Ship(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&pb.ShipRequest{Header: &pb.ShipHeader{Volume: vol, Term: 1, NodeId: "impostor/1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("ship from a node that does not hold the term: %v, want PermissionDenied", err)
	}
	hdr := &pb.SnapshotHeader{Volume: vol, Term: 1, LastTerm: 1, NodeId: "impostor/1"}
	if err := installSnapshot(ctx, cl, hdr, baseSnapshot(), nil); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("install from a node that does not hold the term: %v, want PermissionDenied", err)
	}
	if after := c.status(0, vol); after.Lsn != before.Lsn || after.Commits != before.Commits || after.Holder != "raw" {
		t.Fatalf("refused calls changed the volume: %v → %v", before, after)
	}
	if _, err := cl.Acquire(ctx, &pb.AcquireRequest{Volume: vol, Term: 2}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("acquire without a node id: %v, want InvalidArgument", err)
	}
}
