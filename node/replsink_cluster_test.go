package node

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"reflect"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/jacobsa/fuse/fuseops"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/spoolfs/spoolfs/fsactor"
	"github.com/spoolfs/spoolfs/replication"
)

// replicaSet starts n in-memory replica servers on loopback ports.
func replicaSet(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for i := 0; i < n; i++ {
		srv, err := replication.NewReplicaServer("", zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		g := grpc.NewServer(append(replication.ServerOptions(), grpc.WaitForHandlers(true))...)
		srv.Register(g)
		go func() { _ = g.Serve(lis) }()
		t.Cleanup(func() { g.Stop(); _ = srv.Close() })
		addrs = append(addrs, lis.Addr().String())
	}
	return addrs
}

// actorDriver runs fuseops against an fsactor.State and appends the
// records of each step's Effects to the sink, as the loop would.
type actorDriver struct {
	t    *testing.T
	st   *fsactor.State
	sink fsactor.Sink
	now  time.Time
}

func (d *actorDriver) do(op any) {
	d.t.Helper()
	d.now = d.now.Add(time.Second)
	eff := d.st.Handle(op, fsactor.Caller{Uid: 1000, Gid: 1000, Pid: 1}, d.now)
	if eff.Err != 0 {
		d.t.Fatalf("%T %+v: %v", op, op, eff.Err)
	}
	for _, r := range eff.Records {
		d.sink.Append(r)
	}
	eff.Reset()
}

func (d *actorDriver) create(parent fuseops.InodeID, name, data string) (fuseops.InodeID, fuseops.HandleID) {
	op := &fuseops.CreateFileOp{Parent: parent, Name: name, Mode: 0o640, OpenFlags: syscall.O_RDWR}
	d.do(op)
	if data != "" {
		d.do(&fuseops.WriteFileOp{Inode: op.Entry.Child, Handle: op.Handle, Data: []byte(data)})
	}
	d.do(&fuseops.FlushFileOp{Inode: op.Entry.Child, Handle: op.Handle})
	return op.Entry.Child, op.Handle
}

// workload makes every kind of record the actor emits.
func (d *actorDriver) workload() {
	mk := &fuseops.MkDirOp{Parent: 1, Name: "queue", Mode: os.ModeDir | 0o750}
	d.do(mk)
	q := mk.Entry.Child
	sub := &fuseops.MkDirOp{Parent: q, Name: "sub", Mode: os.ModeDir | 0o700}
	d.do(sub)
	data, fh := d.create(q, "msg-D", "From: a\nTo: b\n\nbody\n")
	d.do(&fuseops.ReleaseFileHandleOp{Handle: fh})
	hdr, fh2 := d.create(q, "msg-H.tmp", "header")
	d.do(&fuseops.ReleaseFileHandleOp{Handle: fh2})
	d.do(&fuseops.RenameOp{OldParent: q, OldName: "msg-H.tmp", NewParent: q, NewName: "msg-H"})
	d.do(&fuseops.CreateLinkOp{Parent: 1, Name: "hard", Target: data})
	d.do(&fuseops.CreateSymlinkOp{Parent: 1, Name: "sym", Target: "queue/msg-H"})
	d.do(&fuseops.SetXattrOp{Inode: hdr, Name: "user.state", Value: []byte("frozen")})
	d.do(&fuseops.SetXattrOp{Inode: data, Name: "user.gone", Value: []byte("x")})
	d.do(&fuseops.RemoveXattrOp{Inode: data, Name: "user.gone"})
	size, mode := uint64(1<<20), os.FileMode(0o600)
	d.do(&fuseops.SetInodeAttributesOp{Inode: hdr, Size: &size, Mode: &mode}) // a hole at the end
	victim, _ := d.create(q, "replaced", "old")
	_ = victim
	d.do(&fuseops.RenameOp{OldParent: 1, OldName: "hard", NewParent: q, NewName: "replaced"})
	d.do(&fuseops.RenameOp{OldParent: q, OldName: "sub", NewParent: 1, NewName: "moved"})
	open, ofh := d.create(q, "open-unlinked", "still open")
	d.do(&fuseops.UnlinkOp{Parent: q, Name: "open-unlinked"})
	d.do(&fuseops.WriteFileOp{Inode: open, Handle: ofh, Data: []byte("more")})
	d.do(&fuseops.FlushFileOp{Inode: open, Handle: ofh})
	d.do(&fuseops.RmDirOp{Parent: 1, Name: "moved"})
	for i := 0; i < 20; i++ {
		_, h := d.create(q, fmt.Sprintf("m%02d", i), string(bytes.Repeat([]byte{byte('a' + i)}, 4096*i)))
		d.do(&fuseops.ReleaseFileHandleOp{Handle: h})
	}
	d.do(&fuseops.UnlinkOp{Parent: q, Name: "m03"})
}

// normal makes two snapshots comparable: entries by name, data without
// its trailing zeros (a hole), atime (never shipped) dropped.
func normal(s *fsactor.Snapshot) map[uint64]fsactor.SnapInode {
	m := map[uint64]fsactor.SnapInode{}
	for _, in := range s.Inodes {
		in.Entries = slices.Clone(in.Entries)
		slices.SortFunc(in.Entries, func(a, b fsactor.SnapDirent) int {
			return bytes.Compare([]byte(a.Name), []byte(b.Name))
		})
		in.Data = bytes.TrimRight(in.Data, "\x00")
		if len(in.Data) == 0 {
			in.Data = nil
		}
		if len(in.Xattrs) == 0 {
			in.Xattrs = nil
		}
		if len(in.Entries) == 0 {
			in.Entries = nil
		}
		in.Attr.Atime = 0
		m[in.Ino] = in
	}
	return m
}

// TestActorThroughReplicas: the records of the real actor, shipped through
// replSink, rebuild on the replicas exactly the volume the actor holds,
// inode numbers included; a second primary recovers it.
func TestActorThroughReplicas(t *testing.T) {
	addrs := replicaSet(t, 3)
	ctx := context.Background()
	cfg := replication.PrimaryConfig{Volume: "spool", NodeID: "n1", Replicas: addrs, AcquireTimeout: 20 * time.Second,
		Root: replication.Attr{Mode: 0o755, Uid: 0, Gid: 0}}
	p, rsnap, err := replication.OpenPrimary(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	sink := NewReplSink(p)
	st, err := fsactor.NewState(fsactor.Config{Volume: "spool"}, rsnap)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d := &actorDriver{t: t, st: st, sink: sink, now: time.Unix(1_700_000_000, 0)}
	d.workload()
	want, err := st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := sink.Wait(wctx, want.LSN); err != nil {
		t.Fatalf("records up to %d not durable: %v", want.LSN, err)
	}

	cfg.NodeID = "n2"
	p2, got, err := replication.OpenPrimary(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if got.LSN != want.LSN || got.NextIno != want.NextIno {
		t.Fatalf("recovered lsn %d next ino %d, actor at %d, %d", got.LSN, got.NextIno, want.LSN, want.NextIno)
	}
	w, g := normal(want), normal(got)
	if len(w) != 24 { // root, queue, msg-D (= replaced), msg-H, sym, m00..m19 but m03
		t.Fatalf("the workload left only %d inodes", len(w))
	}
	for ino, in := range w {
		if !reflect.DeepEqual(in, g[ino]) {
			t.Errorf("inode %d:\n actor   %+v\n replica %+v", ino, in, g[ino])
		}
	}
	for ino := range g {
		if _, ok := w[ino]; !ok {
			t.Errorf("inode %d on the replicas only: %+v", ino, g[ino])
		}
	}
	if _, err := fsactor.NewState(fsactor.Config{Volume: "spool"}, got); err != nil {
		t.Fatalf("the actor refuses the recovered snapshot: %v", err)
	}
}
