package fsactor

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jacobsa/fuse"
	"github.com/jacobsa/fuse/fuseops"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// benchConn is a fake kernel for the baseline without the actor: one
// request in flight, like one client thread doing stat after stat.
type benchConn struct {
	ctx context.Context
	op  any
	req chan struct{} // the "kernel" has a request
	rep chan struct{} // replied
}

func (c *benchConn) ReadOp() (context.Context, any, error) {
	if _, ok := <-c.req; !ok {
		return nil, nil, io.EOF
	}
	return c.ctx, c.op, nil
}

func (c *benchConn) Reply(context.Context, error) error {
	c.rep <- struct{}{}
	return nil
}

// pipeConn hands out n requests as fast as the actor takes them (many
// clients): throughput of the loop. Its device is an eventfd in semaphore
// mode holding n+1 counts: n requests, then the hang-up.
type pipeConn struct {
	efd     int
	ctx     context.Context
	op      any
	n       int64
	read    int64 // actor only
	replied atomic.Int64
}

func newPipeConn(b *testing.B, op any, n int64) *pipeConn {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK|unix.EFD_SEMAPHORE)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Close(efd) })
	var cnt [8]byte
	binary.NativeEndian.PutUint64(cnt[:], uint64(n+1))
	if _, err := unix.Write(efd, cnt[:]); err != nil {
		b.Fatal(err)
	}
	return &pipeConn{efd: efd, ctx: context.Background(), op: op, n: n}
}

func (c *pipeConn) Fd() int { return c.efd }

func (c *pipeConn) ReadOp() (context.Context, any, error) {
	var b [8]byte
	if _, err := unix.Read(c.efd, b[:]); err != nil {
		return nil, nil, &os.PathError{Op: "read", Path: "fake /dev/fuse", Err: err}
	}
	if c.read == c.n {
		return nil, nil, io.EOF
	}
	c.read++
	return c.ctx, c.op, nil
}

func (c *pipeConn) Reply(context.Context, error) error {
	c.replied.Add(1)
	return nil
}

// benchMachine returns the state a benchmark drives: the real State when
// it answers getattr of the root, else the fake (the stub era).
func benchMachine(b *testing.B) machine {
	st, err := NewState(Config{DiscardContent: true}.withDefaults(), nil)
	if err == nil {
		if st.Handle(&fuseops.GetInodeAttributesOp{Inode: 1}, Caller{}, time.Now()).Err == 0 {
			return st
		}
	}
	b.Log("State does not answer getattr yet: benchmarking the loop with the fake state")
	return newFakeMachine()
}

// BenchmarkLoopGetattrDirect is the baseline of BenchmarkLoopInline
// without the loop: one goroutine reads, handles and replies, with no
// poll(2), mailbox or counters.
func BenchmarkLoopGetattrDirect(b *testing.B) {
	st := benchMachine(b)
	c := &benchConn{ctx: context.Background(), op: &fuseops.GetInodeAttributesOp{Inode: 1},
		req: make(chan struct{}), rep: make(chan struct{})}
	go func() {
		for {
			ctx, op, err := c.ReadOp()
			if err != nil {
				return
			}
			eff := st.handleKind(kindOf(op), op, Caller{}, time.Now())
			c.Reply(ctx, replyErr(eff.Err))
			eff.Reset()
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c.req <- struct{}{}
		<-c.rep
	}
	b.StopTimer()
	close(c.req)
}

// BenchmarkLoopPipelined: throughput of the actor reading, stepping and
// replying, the device never empty.
func BenchmarkLoopPipelined(b *testing.B) {
	s := mustServer(b, Config{Log: zap.NewNop()}.withDefaults(), benchMachine(b), &DiscardSink{})
	c := newPipeConn(b, &fuseops.GetInodeAttributesOp{Inode: 1}, int64(b.N))
	b.ReportAllocs()
	b.ResetTimer()
	s.loop.run(c)
	b.StopTimer()
	if c.replied.Load() != int64(b.N) {
		b.Fatalf("%d replies, want %d", c.replied.Load(), b.N)
	}
}

// Real-mount benchmarks. A client process (this test binary re-executed,
// TestHelperClient) runs a tight loop on the mount, so the server's Go
// runtime is alone in this process, as in production.
const clientEnv = "FSACTOR_BENCH_CLIENT" // "op:path:n"

// TestHelperClient is not a test: it is the client process of the mount
// benchmarks, and does nothing unless clientEnv is set
// ("op:target:n:clients"): clients goroutines (threads, as each blocks in
// its syscalls) share n iterations of op on target.
func TestHelperClient(t *testing.T) {
	spec := os.Getenv(clientEnv)
	if spec == "" {
		t.Skip("client process of the mount benchmarks")
	}
	parts := strings.SplitN(spec, ":", 4)
	n, _ := strconv.Atoi(parts[2])
	clients, _ := strconv.Atoi(parts[3])
	start := time.Now()
	errc := make(chan error, clients)
	for c := range clients {
		go func() { errc <- clientRun(parts[0], parts[1], c, n/clients) }()
	}
	for range clients {
		if err := <-errc; err != nil {
			fmt.Println("client error:", err)
			os.Exit(2)
		}
	}
	fmt.Printf("client-ns-per-op %d\n", time.Since(start).Nanoseconds()/int64(max(n, 1)))
	os.Exit(0)
}

func clientRun(op, target string, c, n int) error {
	switch op {
	case "fstat":
		return clientFstat(filepath.Join(target, "f"+strconv.Itoa(c)), n)
	case "create":
		dir := filepath.Join(target, "c"+strconv.Itoa(c))
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		return clientCreate(dir, n)
	}
	return fmt.Errorf("unknown client op %q", op)
}

// clientFstat: fstat of an open file n times (one GETATTR each when the
// attribute timeout is 0).
func clientFstat(path string, n int) error {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CREAT, 0o644)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	for range n {
		if err := syscall.Fstat(fd, &st); err != nil {
			return err
		}
	}
	return nil
}

// clientCreate: create, close, unlink of an empty file n times.
func clientCreate(dir string, n int) error {
	for i := range n {
		p := filepath.Join(dir, "f"+strconv.Itoa(i))
		fd, err := syscall.Open(p, syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		if err := syscall.Close(fd); err != nil {
			return err
		}
		if err := syscall.Unlink(p); err != nil {
			return err
		}
	}
	return nil
}

// runClient runs the client process (clients threads sharing n iterations
// of op on the mount dir) and returns its own ns per iteration.
func runClient(b testing.TB, op, dir string, n, clients int) float64 {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperClient$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%s:%d:%d", clientEnv, op, dir, n, clients))
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("client: %v: %s", err, out)
	}
	var ns float64
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "client-ns-per-op "); ok {
			ns, _ = strconv.ParseFloat(v, 64)
		}
	}
	return ns
}

// mountBenchVariants: "inline", the Server as production runs it, and
// "direct", a goroutine that reads and handles ops itself with no mailbox,
// tasks or counters (the floor the loop is measured against). The
// two-goroutine variants measured before are gone with their code; their
// figures stay in docs/threads.md.
func mountBenchVariants() []string { return []string{"direct", "inline"} }

// mountVariant mounts a volume (no kernel caching) served as variant says.
func mountVariant(b testing.TB, variant string) *testMount {
	needMount(b)
	cfg := Config{Log: zap.NewNop()}
	switch variant {
	case "direct":
		return mountDirect(b, cfg)
	case "inline":
		return mountTest(b, cfg, nil, nil)
	}
	b.Fatalf("no variant %q", variant)
	return nil
}

// directServer serves ops on the reader goroutine itself: no mailbox, no
// actor goroutine. Only for measuring; it runs no tasks.
type directServer struct{ st *State }

func (d directServer) ServeOps(c *fuse.Connection) {
	for {
		ctx, op, err := c.ReadOp()
		if err != nil {
			return
		}
		k, oc := classify(op)
		var caller Caller
		if oc != nil {
			caller = Caller{Uid: oc.Uid, Pid: oc.Pid}
			if opTable[k].creates {
				_, caller.Gid, _, _ = headerIDs(ctx)
			}
		}
		eff := d.st.handleKind(k, op, caller, time.Now())
		c.Reply(ctx, replyErr(eff.Err)) // a local volume: nothing to wait for
		eff.Reset()
	}
}

func mountDirect(b testing.TB, cfg Config) *testMount {
	cfg.DiscardContent = true
	st, err := NewState(cfg.withDefaults(), nil)
	if err != nil {
		b.Fatal(err)
	}
	m := mountDevice(b)
	m.serve(b, directServer{st})
	return m
}

// BenchmarkMountFstat: fstat round trips (one GETATTR each) from a client
// process on a real mount, per loop variant, 1 and 8 client threads.
func BenchmarkMountFstat(b *testing.B) { benchMount(b, "fstat") }

// BenchmarkMountCreate: create+close+unlink of an empty file from a client
// process on a real mount, per loop variant, 1 and 8 client threads.
func BenchmarkMountCreate(b *testing.B) { benchMount(b, "create") }

func benchMount(b *testing.B, op string) {
	for _, clients := range []int{1, 8} {
		for _, v := range mountBenchVariants() {
			b.Run(fmt.Sprintf("c%d/%s", clients, v), func(b *testing.B) {
				m := mountVariant(b, v)
				b.ResetTimer()
				cs := ctxSwitches()
				ns := runClient(b, op, m.dir, b.N, clients)
				b.ReportMetric(float64(ctxSwitches()-cs)/float64(b.N), "srv-ctxsw/op")
				b.ReportMetric(ns, "client-ns/op")
				if m.srv != nil {
					var total uint64
					for _, n := range m.srv.OpCounts() {
						total += n
					}
					b.ReportMetric(float64(total)/float64(b.N), "fuse-req/op")
				}
			})
		}
	}
}

// ctxSwitches sums the voluntary and involuntary context switches of every
// thread of this process (the server side of the mount benchmarks).
func ctxSwitches() uint64 {
	tasks, _ := filepath.Glob("/proc/self/task/*/status")
	var n uint64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				x, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				n += x
			} else if v, ok := strings.CutPrefix(line, "nonvoluntary_ctxt_switches:"); ok {
				x, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				n += x
			}
		}
	}
	return n
}

// TestHopCompare is the interleaved form of the mount benchmarks, for
// numbers that hold on a shared machine: with FSACTOR_HOPCOMPARE=R it runs
// every variant in turn for R rounds (A, B, C, A, B, C...) and logs the
// median client ns per iteration. Skipped otherwise.
//
//	FSACTOR_HOPCOMPARE=5 go test -run TestHopCompare -v ./fsactor
func TestHopCompare(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv("FSACTOR_HOPCOMPARE"))
	if rounds == 0 {
		t.Skip("set FSACTOR_HOPCOMPARE=rounds to compare loop variants on a real mount")
	}
	needMount(t)
	variants := mountBenchVariants()
	if v := os.Getenv("FSACTOR_HOPVARIANTS"); v != "" {
		variants = strings.Split(v, ",")
	}
	type key struct {
		op      string
		clients int
		variant string
	}
	results := map[key][]float64{}
	work := []struct {
		op         string
		clients, n int
	}{{"fstat", 1, 20000}, {"fstat", 8, 40000}, {"create", 1, 4000}, {"create", 8, 8000}}
	for range rounds {
		for _, w := range work {
			for _, v := range variants {
				ns, cs := hopRun(t, v, w.op, w.n, w.clients)
				k := key{w.op, w.clients, v}
				results[k] = append(results[k], ns)
				results[key{w.op + "-ctxsw", w.clients, v}] = append(results[key{w.op + "-ctxsw", w.clients, v}], cs)
			}
		}
	}
	for _, w := range work {
		for _, v := range variants {
			t.Logf("%-6s c=%d %-18s median %8.0f ns/iter  %.2f server ctxsw/iter",
				w.op, w.clients, v, median(results[key{w.op, w.clients, v}]),
				median(results[key{w.op + "-ctxsw", w.clients, v}]))
		}
	}
}

// hopRun mounts one variant, runs one client and returns its ns per
// iteration and the server's context switches per iteration.
func hopRun(t *testing.T, variant, op string, n, clients int) (float64, float64) {
	var ns, cs float64
	t.Run(fmt.Sprintf("%s-c%d-%s", op, clients, variant), func(t *testing.T) {
		m := mountVariant(t, variant)
		c0 := ctxSwitches()
		ns = runClient(t, op, m.dir, n, clients)
		cs = float64(ctxSwitches()-c0) / float64(n)
	})
	return ns, cs
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
