package replication

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
	pb "github.com/spoolfs/spoolfs/proto"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// testCluster is a set of real replica servers on loopback ports with
// buntdb files in temporary directories (hashicorp/raft's MakeCluster).
type testCluster struct {
	t    testing.TB
	log  *zap.Logger
	reps []*testReplica
}

type testReplica struct {
	dir  string
	addr string
	opts []ReplicaOption
	mu   sync.Mutex
	srv  *ReplicaServer // nil while killed
	g    *grpc.Server
}

func testLogger(t testing.TB) *zap.Logger {
	return zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
}

// makeCluster starts n replicas; they stop when the test ends.
func makeCluster(t testing.TB, n int, opts ...ReplicaOption) *testCluster {
	t.Helper()
	c := &testCluster{t: t, log: testLogger(t)}
	for i := 0; i < n; i++ {
		r := &testReplica{dir: t.TempDir(), opts: opts}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r.addr = lis.Addr().String()
		c.reps = append(c.reps, r)
		c.serve(i, lis)
	}
	t.Cleanup(func() {
		for i := range c.reps {
			c.kill(i)
		}
	})
	return c
}

func (c *testCluster) serve(i int, lis net.Listener) {
	r := c.reps[i]
	srv, err := NewReplicaServer(r.dir, c.log.With(zap.Int("replica", i)), r.opts...)
	if err != nil {
		c.t.Fatalf("replica %d: %v", i, err)
	}
	g := grpc.NewServer(append(ServerOptions(), grpc.WaitForHandlers(true))...)
	srv.Register(g)
	r.mu.Lock()
	r.srv, r.g = srv, g
	r.mu.Unlock()
	go func() { _ = g.Serve(lis) }()
}

// kill stops replica i: connections drop, its databases close.
func (c *testCluster) kill(i int) {
	r := c.reps[i]
	r.mu.Lock()
	srv, g := r.srv, r.g
	r.srv, r.g = nil, nil
	r.mu.Unlock()
	if srv == nil {
		return
	}
	g.Stop()
	_ = srv.Close()
}

// restart brings replica i back on its address, from its disk.
func (c *testCluster) restart(i int) {
	c.t.Helper()
	var lis net.Listener
	testsupport.WaitForErr(c.t, 10*time.Second, fmt.Sprintf("replica %d's address to listen on again", i), func() (err error) {
		lis, err = net.Listen("tcp", c.reps[i].addr)
		return err
	})
	c.serve(i, lis)
}

func (c *testCluster) server(i int) *ReplicaServer {
	c.reps[i].mu.Lock()
	defer c.reps[i].mu.Unlock()
	if c.reps[i].srv == nil {
		c.t.Fatalf("replica %d is down", i)
	}
	return c.reps[i].srv
}

func (c *testCluster) addrs() []string {
	var a []string
	for _, r := range c.reps {
		a = append(a, r.addr)
	}
	return a
}

// status of volume vol on replica i (zero when it has none).
func (c *testCluster) status(i int, vol string) *pb.VolumeStatus {
	resp, err := c.server(i).Status(context.Background(), &pb.StatusRequest{Volume: vol})
	if err != nil || len(resp.Volumes) == 0 {
		return &pb.VolumeStatus{}
	}
	return resp.Volumes[0]
}

// waitForLSN waits until each listed replica (all if none) holds lsn.
func (c *testCluster) waitForLSN(vol string, lsn uint64, replicas ...int) {
	c.t.Helper()
	if len(replicas) == 0 {
		for i := range c.reps {
			replicas = append(replicas, i)
		}
	}
	for _, i := range replicas {
		testsupport.WaitFor(c.t, 20*time.Second, fmt.Sprintf("replica %d at lsn %d", i, lsn), func() bool {
			return c.status(i, vol).Lsn >= lsn
		})
	}
}

// snapshot reads volume vol as replica i stores it.
func (c *testCluster) snapshot(i int, vol string) *Snapshot {
	c.t.Helper()
	v, err := c.server(i).volume(vol, false)
	if err != nil {
		c.t.Fatal(err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	snap, _, err := v.st.readSnapshot()
	if err != nil {
		c.t.Fatal(err)
	}
	return snap
}

func (c *testCluster) primaryConfig(vol string) PrimaryConfig {
	return PrimaryConfig{Volume: vol, NodeID: "test", Replicas: c.addrs(), W: 2,
		AcquireTimeout: 20 * time.Second, CallTimeout: 2 * time.Second,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Log: c.log}
}

// openPrimary opens a primary (closed when the test ends) with a model
// of the volume as its snapshot source.
func (c *testCluster) openPrimary(cfg PrimaryConfig) (*Primary, *model) {
	c.t.Helper()
	p, snap, err := OpenPrimary(context.Background(), cfg)
	if err != nil {
		c.t.Fatalf("open primary: %v", err)
	}
	c.t.Cleanup(func() { _ = p.Close() })
	m := newModel(c.t, snap)
	m.p = p
	p.SetSnapshotSource(m.snapshot)
	return p, m
}

// rawClient is a plain gRPC client to replica i, for tests that speak the
// protocol themselves.
func (c *testCluster) rawClient(i int) pb.ReplicaClient {
	c.t.Helper()
	conn, err := grpc.NewClient(c.reps[i].addr, append(DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = conn.Close() })
	return pb.NewReplicaClient(conn)
}

// model stands in for the actor: it applies the records the test writes
// to an in-memory store (the same applier, so it is not an oracle for
// apply itself) and serves snapshots from it.
type model struct {
	t   testing.TB
	mu  sync.Mutex
	st  *volStore
	p   *Primary
	lsn uint64
	ino uint64
}

func newModel(t testing.TB, snap *Snapshot) *model {
	st, err := openVolStore("", 0, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	m := meta{LastTerm: 1, LSN: snap.LSN, NextIno: snap.NextIno, Initialized: true}
	if err := st.install(snap, m); err != nil {
		t.Fatal(err)
	}
	return &model{t: t, st: st, lsn: snap.LSN, ino: snap.NextIno}
}

// append applies r (LSN assigned here) to the model and the primary.
func (m *model) append(r *Record) uint64 {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lsn++
	r.LSN = m.lsn
	v, done := m.st.view()
	mt := m.st.meta
	err := (&applier{v: v, lim: Limits{}.withDefaults(), meta: &mt}).apply(r)
	done()
	if err != nil {
		m.t.Fatalf("model rejects lsn %d: %v", r.LSN, err)
	}
	mt.LSN = r.LSN
	if err := m.st.commit(v, mt); err != nil {
		m.t.Fatal(err)
	}
	if m.p != nil {
		cp := *r
		m.p.Append(&cp)
	}
	return r.LSN
}

func (m *model) snapshot(ctx context.Context) (*Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	snap, _, err := m.st.readSnapshot()
	return snap, err
}

func (m *model) newIno() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino := m.ino
	m.ino++
	return ino
}

const testTime = int64(1_700_000_000_000_000_000)

func fileAttr(size int) Attr {
	return Attr{Mode: modeReg | 0o644, Nlink: 1, Size: uint64(size), Mtime: testTime, Ctime: testTime}
}

func dirAttr() Attr { return Attr{Mode: modeDir | 0o755, Nlink: 2, Ctime: testTime} }

// writeFile creates parent/name with content and returns its inode and
// the lsn of its data record.
func (m *model) writeFile(parent uint64, name string, content []byte) (uint64, uint64) {
	ino := m.newIno()
	m.append(&Record{Op: OpCreate, Ino: ino, Parent: parent, Name: name, Attr: fileAttr(0)})
	lsn := m.append(&Record{Op: OpData, Ino: ino, Attr: fileAttr(len(content)), Data: content})
	return ino, lsn
}

func (m *model) mkdir(parent uint64, name string) uint64 {
	ino := m.newIno()
	m.append(&Record{Op: OpCreate, Ino: ino, Parent: parent, Name: name, Attr: dirAttr()})
	return ino
}

// find resolves a slash-separated path in a snapshot.
func find(snap *Snapshot, path string) (*SnapInode, bool) {
	byIno := map[uint64]*SnapInode{}
	for i := range snap.Inodes {
		byIno[snap.Inodes[i].Ino] = &snap.Inodes[i]
	}
	cur := byIno[RootIno]
	for _, part := range strings.Split(strings.Trim(path, "/"), "/") {
		if part == "" {
			continue
		}
		next := uint64(0)
		for _, e := range cur.Entries {
			if e.Name == part {
				next = e.Ino
			}
		}
		if next == 0 {
			return nil, false
		}
		cur = byIno[next]
	}
	return cur, cur != nil
}

func mustWait(t testing.TB, p *Primary, lsn uint64, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := p.Wait(ctx, lsn); err != nil {
		t.Fatalf("wait for lsn %d: %v", lsn, err)
	}
}

func insecureCreds() credentials.TransportCredentials { return insecure.NewCredentials() }
