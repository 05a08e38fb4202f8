package node

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/config"
	"github.com/spoolfs/spoolfs/internal/faultproxy"
	"github.com/spoolfs/spoolfs/replication"
)

// faultCluster is a replicated mount whose three replicas (real servers,
// real buntdb files) sit behind TCP proxies the test controls.
type faultCluster struct {
	rv      *ReplicatedVolume
	proxies []*faultproxy.Proxy
	procs   []*proc // the replica processes, with processes
	dir     string  // the mount point
}

// startFaultCluster mounts volume "spool" with the given flush timeout
// through three proxied replicas: in this process, or `spoolfs replica`
// processes (which a test can stop) if procs. Cleanup unmounts and stops
// everything.
func startFaultCluster(t *testing.T, flush time.Duration, log *zap.Logger, procs bool) *faultCluster {
	t.Helper()
	fc := &faultCluster{}
	var addrs []string
	for i := 0; i < 3; i++ {
		var addr string
		if procs {
			var rp *proc
			addr, rp = startReplicaProc(t)
			fc.procs = append(fc.procs, rp)
		} else {
			r, err := StartReplica(ReplicaOptions{Listen: "127.0.0.1:0", DataDir: t.TempDir()}, log)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				r.Stop(ctx)
			})
			addr = r.Addr()
		}
		p, err := faultproxy.New(addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		fc.proxies = append(fc.proxies, p)
		addrs = append(addrs, p.Addr())
	}
	o := config.DefaultMountOptions()
	o.Replicated()
	o.Volume, o.Dir, o.FlushTimeout = "spool", newMountDir(t), flush
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rv, err := MountReplicated(ctx, o, ReplicationOptions{NodeID: "n1", Replicas: addrs,
		Progress: func(replication.Progress) {}}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range fc.proxies {
			p.Heal()
		}
		for _, rp := range fc.procs {
			_ = rp.cmd.Process.Signal(syscall.SIGCONT)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := rv.Unmount(ctx); err != nil {
			t.Errorf("unmount: %v", err)
		}
		<-rv.Done()
		rv.Close(time.Second)
	})
	fc.rv, fc.dir = rv, o.Dir
	return fc
}

// startReplicaProc starts `spoolfs replica` on a free loopback port (the
// cleanup of startSpoolfs kills it).
func startReplicaProc(t *testing.T) (string, *proc) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	rp := startSpoolfs(t, nil, "replica", "--listen", addr, "--data", t.TempDir())
	waitLog(t, rp, "replica serving")
	return addr, rp
}

// callLog times every system call the writers make.
type callLog struct {
	bound time.Duration

	mu    sync.Mutex
	slow  []string // calls that took longer than bound
	max   time.Duration
	calls int
	errs  map[string]int // op: errno → count
}

// timed runs one call and notes how long it took.
func (cl *callLog) timed(op string, f func() error) error {
	start := time.Now()
	err := f()
	d := time.Since(start)
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.calls++
	cl.max = max(cl.max, d)
	if d > cl.bound {
		cl.slow = append(cl.slow, fmt.Sprintf("%s took %v (%v) at %s", op, d.Round(time.Millisecond), err,
			start.Format("15:04:05.000")))
	}
	if err != nil {
		cl.errs[fmt.Sprintf("%s: %v", op, err)]++
	}
	return err
}

// spoolWriter is one of exim's writers: a data file written, fsynced and
// closed, a header file written under a temporary name, fsynced, closed
// and renamed into place (the rename publishes the message). It counts
// the messages published without an error.
type spoolWriter struct {
	id        int
	dir       string
	cl        *callLog
	published atomic.Int64
}

func (w *spoolWriter) run(stop <-chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		if err := w.message(i); err != nil {
			// A writer that fails retries the next message at once, as a
			// mail server requeues; pace it a little so it does not spin.
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

func (w *spoolWriter) message(i int) error {
	base := fmt.Sprintf("%d-%d", w.id, i)
	if err := w.file(base+"-D", []byte("From: a@example.org\n\nbody "+base+"\n")); err != nil {
		return err
	}
	tmp := filepath.Join(w.dir, "hdr."+base)
	if err := w.file("hdr."+base, []byte("header "+base+"\n")); err != nil {
		return err
	}
	if err := w.cl.timed("rename", func() error { return unix.Rename(tmp, filepath.Join(w.dir, base+"-H")) }); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := w.cl.timed("stat", func() error { return unix.Stat(filepath.Join(w.dir, base+"-H"), &st) }); err != nil {
		return err
	}
	w.published.Add(1)
	return nil
}

// file creates name, writes data, fsyncs and closes it (raw system calls:
// see writeFileRaw for why not os.File).
func (w *spoolWriter) file(name string, data []byte) error {
	var fd int
	path := filepath.Join(w.dir, name)
	err := w.cl.timed("create", func() (err error) {
		fd, err = unix.Open(path, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return err
	}
	err = w.cl.timed("write", func() error { _, err := unix.Write(fd, data); return err })
	if err == nil {
		err = w.cl.timed("fsync", func() error { return unix.Fsync(fd) })
	}
	if cerr := w.cl.timed("close", func() error { return unix.Close(fd) }); err == nil {
		err = cerr
	}
	return err
}

// writers runs n spool writers in dir until the returned stop is called.
type writers struct {
	ws   []*spoolWriter
	stop chan struct{}
	wg   sync.WaitGroup
}

func startWriters(dir string, n int, cl *callLog) *writers {
	w := &writers{stop: make(chan struct{})}
	for i := 0; i < n; i++ {
		sw := &spoolWriter{id: i, dir: dir, cl: cl}
		w.ws = append(w.ws, sw)
		w.wg.Add(1)
		go func() { defer w.wg.Done(); sw.run(w.stop) }()
	}
	return w
}

func (w *writers) halt() {
	close(w.stop)
	w.wg.Wait()
}

// published is each writer's count of published messages.
func (w *writers) published() []int64 {
	out := make([]int64, len(w.ws))
	for i, sw := range w.ws {
		out[i] = sw.published.Load()
	}
	return out
}

// waitAllPublish waits until every writer published a message after now.
func (w *writers) waitAllPublish(t *testing.T, what string, within time.Duration) {
	t.Helper()
	before := w.published()
	deadline := time.Now().Add(within)
	for {
		after, done := w.published(), true
		for i := range after {
			if after[i] == before[i] {
				done = false
			}
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: writers did not all publish a message within %v (before %v, now %v)", what, within, before, after)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNoHangUnderPartitions: 8 spool writers in one directory on a
// replicated mount with a 2 s flush timeout, while the replicas are cut
// off one and two at a time (connections open and silent, as a partition
// or a stopped process; or reset). Every call — create, write, fsync,
// close, rename, stat — is answered within the flush timeout plus 2 s,
// and once the network heals every writer publishes again.
//
// On the old code a lost quorum made each writer's rename wait the whole
// flush timeout, one after another, while holding the directory's lock in
// the kernel: creates and stats in that directory waited behind all of
// them (8 × 2 s), as the spool froze for minutes in issue 9's trials.
func TestNoHangUnderPartitions(t *testing.T) {
	requireFUSE(t)
	const flush = 2 * time.Second
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	fc := startFaultCluster(t, flush, log, false)
	w := startSpool(t, fc, flush)
	p := fc.proxies

	t.Log("partition of one replica (blackhole): the quorum holds")
	p[0].Blackhole()
	w.waitAllPublish(t, "one replica blackholed", 20*time.Second)

	t.Log("a second replica stops (blackhole): no quorum for 4 flush timeouts")
	p[1].Blackhole()
	hold(4 * flush)
	if vs := fc.rv.volumeStatus(); !vs.NoQuorum {
		t.Errorf("status during the partition does not say the quorum is lost: %+v", vs)
	}
	p[0].Heal()
	p[1].Heal()
	w.waitAllPublish(t, "healed after two blackholed", 60*time.Second)
	if vs := fc.rv.volumeStatus(); vs.NoQuorum {
		t.Errorf("status after the heal says the quorum is lost: %+v", vs)
	}

	t.Log("partition of two replicas by connection resets")
	p[1].Reset()
	p[2].Reset()
	hold(4 * flush)
	p[1].Heal()
	p[2].Heal()
	w.waitAllPublish(t, "healed after two reset", 60*time.Second)

	t.Log("one replica blackholed, then another reset")
	p[2].Blackhole()
	w.waitAllPublish(t, "one replica blackholed", 20*time.Second)
	p[0].Reset()
	hold(4 * flush)
	p[0].Heal()
	p[2].Heal()
	w.waitAllPublish(t, "healed at the end", 60*time.Second)
}

// TestNoHangReplicaStopped: as TestNoHangUnderPartitions, with `spoolfs
// replica` processes: a partition of one replica, then another replica
// stopped (SIGSTOP: its kernel still accepts bytes, it answers nothing,
// not even keepalives) and resumed; then two replicas stopped at once.
// This is the trigger seen in issue 9's trials.
func TestNoHangReplicaStopped(t *testing.T) {
	requireMount(t)
	const flush = 2 * time.Second
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	fc := startFaultCluster(t, flush, log, true)
	w := startSpool(t, fc, flush)

	t.Log("partition of one replica, then a second one stopped")
	fc.proxies[0].Blackhole()
	w.waitAllPublish(t, "one replica blackholed", 20*time.Second)
	fc.procs[1].signal(t, syscall.SIGSTOP)
	hold(4 * flush)
	fc.procs[1].signal(t, syscall.SIGCONT)
	fc.proxies[0].Heal()
	w.waitAllPublish(t, "resumed and healed", 60*time.Second)

	t.Log("two replicas stopped")
	fc.procs[0].signal(t, syscall.SIGSTOP)
	fc.procs[2].signal(t, syscall.SIGSTOP)
	hold(4 * flush)
	fc.procs[0].signal(t, syscall.SIGCONT)
	fc.procs[2].signal(t, syscall.SIGCONT)
	w.waitAllPublish(t, "both resumed", 60*time.Second)
}

// startSpool makes the spool directory, starts 8 writers in it, whose
// calls must each be answered within flush + 2 s, and waits until each
// publishes. t's cleanups halt them and report their calls (first: the
// cluster's own cleanups were registered before).
func startSpool(t *testing.T, fc *faultCluster, flush time.Duration) *writers {
	t.Helper()
	spool := filepath.Join(fc.dir, "input")
	if err := unix.Mkdir(spool, 0o750); err != nil {
		t.Fatal(err)
	}
	cl := &callLog{bound: flush + 2*time.Second, errs: map[string]int{}}
	w := startWriters(spool, 8, cl)
	t.Cleanup(func() {
		w.halt()
		report(t, cl)
	})
	w.waitAllPublish(t, "healthy", 20*time.Second)
	return w
}

// hold lets a fault last d while the writers run: the test is about what
// the calls made meanwhile do, and each of them is timed.
func hold(d time.Duration) { time.Sleep(d) }

func report(t *testing.T, cl *callLog) {
	t.Helper()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	var errs []string
	for e, n := range cl.errs {
		errs = append(errs, fmt.Sprintf("%5d × %s", n, e))
	}
	sort.Strings(errs)
	t.Logf("%d calls, slowest %v; errors:\n%s", cl.calls, cl.max.Round(time.Millisecond), joinLines(errs))
	for _, s := range cl.slow {
		t.Errorf("call not answered within %v: %s", cl.bound, s)
	}
}

func joinLines(s []string) string {
	out := ""
	for _, l := range s {
		out += "  " + l + "\n"
	}
	return out
}
