package replication

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
	"github.com/spoolfs/spoolfs/internal/tlsid"
	pb "github.com/spoolfs/spoolfs/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestWatchRing: the ring's verdicts on a cursor: behind its tail, on
// another history, ahead (wait), and the records after it.
func TestWatchRing(t *testing.T) {
	w := newWatchRing(300, 10, 2)
	rec := func(lsn, term uint64) *Record { return &Record{LSN: lsn, Term: term, Op: OpSetattr} } // 96 bytes each
	w.append([]*Record{rec(11, 2), rec(12, 3), rec(13, 3)}, 10, 13, 1)
	read := func(lsn, term uint64) ([]ringRec, error) {
		recs, _, _, _, err := w.read(&watchCursor{lsn: lsn, term: term}, 1<<20)
		return recs, err
	}
	if recs, err := read(10, 2); err != nil || len(recs) != 3 {
		t.Fatalf("from the base: %d records, %v", len(recs), err)
	}
	if _, err := read(11, 3); !IsWatchResync(err) {
		t.Fatalf("lsn 11 of the wrong term: %v, want WATCH_RESYNC", err)
	}
	if recs, err := read(14, 3); err != nil || len(recs) != 0 {
		t.Fatalf("ahead on the same term: %d records, %v; want a wait", len(recs), err)
	}
	if _, err := read(14, 2); !IsWatchResync(err) {
		t.Fatalf("ahead on an older term than the ring's last: %v, want WATCH_RESYNC", err)
	}
	w.append([]*Record{rec(14, 3)}, 13, 14, 2) // 4 × 96 > 300: lsn 11 drops out
	if n, b := w.held(); n != 3 || b != 288 {
		t.Fatalf("ring holds %d records, %d bytes; want 3, 288", n, b)
	}
	if _, err := read(10, 2); !IsWatchResync(err) {
		t.Fatalf("behind the tail: %v, want WATCH_RESYNC", err)
	}
	big := &Record{LSN: 15, Term: 3, Op: OpData, Data: make([]byte, 1000)}
	w.append([]*Record{big}, 14, 15, 3)
	if n, _ := w.held(); n != 1 {
		t.Fatalf("a record above the bound: ring holds %d records, want it alone", n)
	}
	c := &watchCursor{lsn: 14, term: 3}
	if recs, _, _, _, err := w.read(c, 1); err != nil || len(recs) != 1 || recs[0].r != big {
		t.Fatalf("the big record: %v %v", recs, err)
	}
	w.reset(15, 4) // an install on another history at the cursor's lsn
	c.lsn = 15
	if _, _, _, _, err := w.read(c, 1); !IsWatchResync(err) {
		t.Fatalf("after a reset to another term: %v, want WATCH_RESYNC", err)
	}
}

// watchClient reads a raw Watch stream (tests that speak the protocol).
type watchClient struct {
	stream pb.Replica_WatchClient
	cancel context.CancelFunc
}

func openWatch(t *testing.T, c pb.ReplicaClient, from, term uint64) *watchClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := c.Watch(ctx, &pb.WatchRequest{Volume: vol, NodeId: "w", FromLsn: from, FromTerm: term, ProtocolVersion: ProtocolVersion})
	if err != nil {
		t.Fatal(err)
	}
	return &watchClient{stream: s, cancel: cancel}
}

// TestWatchAheadWaitsWithHeartbeats: a watcher ahead of the replica gets
// heartbeats (with the replica's position) and then the records once the
// replica has them.
func TestWatchAheadWaitsWithHeartbeats(t *testing.T) {
	c := makeCluster(t, 3, withWatchHeartbeat(20*time.Millisecond))
	p, m := c.openPrimary(c.primaryConfig(vol))
	m.mkdir(RootIno, "d")
	lsn := m.lsn
	mustWait(t, p, lsn, 10*time.Second)
	c.waitForLSN(vol, lsn, 0)
	w := openWatch(t, c.rawClient(0), lsn+1, p.Term())
	for range 3 {
		ev, err := w.stream.Recv()
		if err != nil || !ev.Heartbeat || ev.DurableLsn != lsn || len(ev.Records) != 0 {
			t.Fatalf("event %+v, %v: want a heartbeat at lsn %d", ev, err, lsn)
		}
	}
	m.mkdir(RootIno, "e")
	m.mkdir(RootIno, "f")
	last := m.lsn
	mustWait(t, p, last, 10*time.Second)
	c.waitForLSN(vol, last, 0)
	for {
		ev, err := w.stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(ev.Records) > 0 {
			if ev.Records[0].Lsn != lsn+2 || ev.DurableUnixNano == 0 {
				t.Fatalf("first record sent: %+v, want lsn %d with its durability time", ev, lsn+2)
			}
			return
		}
	}
}

// TestWatchBigRecord: a data record larger than the replica's watch ring
// (which keeps its newest record whatever its weight) and than one gRPC
// message (maxMsgSize) streams to a follower in pieces and arrives whole.
// A 1 MiB ring and a 12 MiB record prove what the default 64 MiB ring
// with a 64 MiB record would, at a fifth of the bytes.
func TestWatchBigRecord(t *testing.T) {
	const ring, size = 1 << 20, maxMsgSize + 4<<20
	c := makeCluster(t, 1, WithWatchBuffer(ring))
	cfg := c.primaryConfig(vol)
	cfg.W = 1
	p, m := c.openPrimary(cfg)
	_, target := c.startFollower(c.followerConfig(vol))
	big := bytes.Repeat([]byte("spoolfs!"), size/8)
	_, lsn := m.writeFile(RootIno, "big", big)
	mustWait(t, p, lsn, 60*time.Second)
	waitFollower(t, c, target, lsn, 0)
}

// TestStalledWatcher: a watcher that stops reading neither holds the
// replica's memory beyond its ring nor delays the acks the primary waits
// for; when it reads again it is told to resync. Every record a ring
// drops is counted when the garbage collector frees it: all of them but
// what the stalled watcher took before it stalled (one read, about
// watchReadBytes) must go.
func TestStalledWatcher(t *testing.T) {
	const ring, size, writes = 1 << 20, 512 << 10, 48 // 24 MiB through 1 MiB rings
	var appended, freed atomic.Int64
	hook := func(r *Record) {
		appended.Add(1)
		runtime.SetFinalizer(r, func(*Record) { freed.Add(1) })
	}
	ringAppendHook.Store(&hook)
	defer ringAppendHook.Store(nil)
	c := makeCluster(t, 3, WithWatchBuffer(ring))
	cfg := c.primaryConfig(vol)
	cfg.MaxLogBytes = 2 << 20
	p, m := c.openPrimary(cfg)
	// A client window of 64 KiB: the replica's sends block at once
	// instead of filling the default 64 MiB window first.
	conn, err := grpc.NewClient(c.reps[0].addr, append(DialOptions(), grpc.WithTransportCredentials(insecureCreds()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	w := openWatch(t, pb.NewReplicaClient(conn), 0, p.Term())
	if _, err := w.stream.Recv(); err != nil { // the stream is up; now it reads nothing
		t.Fatal(err)
	}
	var inos []uint64
	for i := range 4 {
		ino, _ := m.writeFile(RootIno, fmt.Sprintf("m%d", i), nil)
		inos = append(inos, ino)
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	var lsn uint64
	for i := range writes {
		data := bytes.Repeat([]byte{byte('a' + i%26)}, size)
		lsn = m.append(&Record{Op: OpData, Ino: inos[i%4], Attr: fileAttr(size), Data: data})
		mustWait(t, p, lsn, 30*time.Second) // each write is acknowledged while the watcher stalls
	}
	took := time.Since(start)
	c.waitForLSN(vol, lsn)
	var held int64
	for i := range 3 {
		v, _ := c.server(i).volume(vol, false)
		n, b := v.ring.held()
		if b > ring+size {
			t.Fatalf("ring of replica %d holds %d bytes, bound %d", i, b, ring)
		}
		held += int64(n)
	}
	testsupport.WaitFor(t, 20*time.Second, "records dropped by the rings to be freed", func() bool {
		runtime.GC()
		return freed.Load() >= appended.Load()-held-8
	})
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	t.Logf("%d MiB written and acknowledged in %v with a stalled watcher; %d of %d ring records freed; heap in use %d MiB before, %d MiB after",
		writes*size>>20, took.Round(time.Millisecond), freed.Load(), appended.Load(), before.HeapInuse>>20, after.HeapInuse>>20)
	for {
		_, err := w.stream.Recv()
		if err == nil {
			continue
		}
		if !IsWatchResync(err) {
			t.Fatalf("the stalled watcher's stream ended with %v, want WATCH_RESYNC", err)
		}
		break
	}
}

// TestFollowAllowlist: over mTLS, a volume with a follow allowlist is
// watched and fetched only by the nodes on it and its holder; a node the
// CA knows but the list leaves out gets PermissionDenied.
func TestFollowAllowlist(t *testing.T) {
	dir := t.TempDir()
	if err := tlsid.CreateCA(dir, "test CA", time.Hour); err != nil {
		t.Fatal(err)
	}
	creds := map[string]*tlsid.Material{}
	for _, n := range []string{"r1", "p1", "f1", "f2"} {
		if err := tlsid.IssueNodeCert(dir, dir, n, []string{"127.0.0.1"}, time.Hour); err != nil {
			t.Fatal(err)
		}
		f := tlsid.Files{CA: filepath.Join(dir, tlsid.CACertFile), Cert: filepath.Join(dir, n+".crt"), Key: filepath.Join(dir, n+".key")}
		mat, err := f.Material(nil)
		if err != nil {
			t.Fatal(err)
		}
		creds[n] = mat
	}
	srv, err := NewReplicaServer(t.TempDir(), testLogger(t), WithFollowAllow(map[string][]string{vol: {"f1"}}))
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(append(ServerOptions(), grpc.Creds(creds["r1"].ServerCreds()))...)
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(func() { g.Stop(); _ = srv.Close() })
	addrs := []string{lis.Addr().String()}
	pcfg := PrimaryConfig{Volume: vol, NodeID: "p1", Replicas: addrs, W: 1, Creds: creds["p1"].ClientCreds(),
		AcquireTimeout: 10 * time.Second, CallTimeout: 2 * time.Second, Log: testLogger(t)}
	p, _, err := OpenPrimary(context.Background(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	follow := func(node string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		f, _, err := OpenFollower(ctx, FollowerConfig{Volume: vol, NodeID: node, Replicas: addrs, Creds: creds[node].ClientCreds(),
			Log: testLogger(t)})
		if err != nil {
			return err
		}
		defer f.Close()
		w, err := f.clients[0].Watch(ctx, &pb.WatchRequest{Volume: vol, NodeId: node, ProtocolVersion: ProtocolVersion})
		if err == nil {
			_, err = w.Recv()
		}
		return err
	}
	for _, n := range []string{"f1", "p1"} {
		if err := follow(n); err != nil {
			t.Errorf("%s (on the list, or the holder): %v", n, err)
		}
	}
	err = follow("f2")
	if err == nil {
		t.Fatal("f2, not on the allowlist, followed the volume")
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("f2's OpenFollower: %v, want PermissionDenied (its Fetch)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(addrs[0], append(DialOptions(), grpc.WithTransportCredentials(creds["f2"].ClientCreds()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	w, err := pb.NewReplicaClient(conn).Watch(ctx, &pb.WatchRequest{Volume: vol, NodeId: "f2", ProtocolVersion: ProtocolVersion})
	if err == nil {
		_, err = w.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("f2's Watch: %v, want PermissionDenied", err)
	}
}

// TestSlowFetchDoesNotHoldCommits: a Fetch whose reader stalls (a
// follower loading its snapshot over a slow link) does not stop the
// replica's commits: with W = 3 every write needs that replica's ack.
func TestSlowFetchDoesNotHoldCommits(t *testing.T) {
	c := makeCluster(t, 3)
	cfg := c.primaryConfig(vol)
	cfg.W = 3
	p, m := c.openPrimary(cfg)
	var lsn uint64
	for i := range 32 { // 4 MiB: the fetch's sends block after the first chunks
		_, lsn = m.writeFile(RootIno, fmt.Sprintf("m%d", i), bytes.Repeat([]byte{byte('a' + i%26)}, 128<<10))
	}
	mustWait(t, p, lsn, 30*time.Second)
	conn, err := grpc.NewClient(c.reps[0].addr, append(DialOptions(), grpc.WithTransportCredentials(insecureCreds()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fetch, err := pb.NewReplicaClient(conn).Fetch(ctx, &pb.FetchRequest{Volume: vol, ProtocolVersion: ProtocolVersion})
	if err != nil {
		t.Fatal(err)
	}
	first, err := fetch.Recv() // the header; then the reader stalls with 3 MiB to come
	if err != nil {
		t.Fatal(err)
	}
	_, lsn = m.writeFile(RootIno, "during", []byte("written while the fetch stalls"))
	mustWait(t, p, lsn, 30*time.Second)
	// The stalled fetch still sends the volume as it was when it began.
	asm := &snapAssembler{lim: followLimits}
	for c := first; ; {
		if err := asm.add(c); err != nil {
			t.Fatal(err)
		}
		if c, err = fetch.Recv(); err != nil {
			break
		}
	}
	hdr, snap, err := asm.finish()
	if err != nil {
		t.Fatal(err)
	}
	if _, during := find(snap, "during"); hdr.Lsn != lsn-2 || len(snap.Inodes) != 33 || during {
		t.Fatalf("fetched lsn %d, %d inodes (\"during\" there: %v); want lsn %d, 33 inodes, as when it began", hdr.Lsn, len(snap.Inodes), during, lsn-2)
	}
}
