package e2e

// The process-level cluster of the replication tests (durability_test.go,
// fencing_test.go, quorum_test.go): real `spoolfs replica` processes on
// loopback ports with their data in temp dirs, and primaries started as
// `spoolfs mount --replicas`, each a separate process that the tests
// SIGKILL at will.

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/spoolfs/spoolfs/internal/testsupport"
	pb "github.com/spoolfs/spoolfs/proto"
)

// replicaDeadline bounds a replica's start.
const replicaDeadline = 10 * time.Second

// requireCluster skips or fails (CI) like every mount test, and skips for
// a tmpfs subject: replication is spoolfs's alone.
func requireCluster(t *testing.T) {
	t.Helper()
	if *flagSubject != "spoolfs" {
		t.Skip("replication tests need spoolfs (-e2e.subject=spoolfs)")
	}
	requireMountable(t)
	needBinary(t)
}

// proc is one spoolfs process of a cluster test.
type proc struct {
	name   string
	cmd    *exec.Cmd
	out    *testsupport.Buffer
	exited chan struct{}
	err    error // valid after exited
}

// startProc runs the spoolfs binary with args; its output goes to out.
func startProc(name string, out *testsupport.Buffer, args ...string) (*proc, error) {
	p := &proc{name: name, out: out, exited: make(chan struct{})}
	p.cmd = exec.Command(binPath(), append([]string{"--log-format", "console"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	return p, nil
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill9 SIGKILLs the process and waits for it.
func (p *proc) kill9() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// terminate sends SIGTERM and waits up to d, then SIGKILLs. It says
// whether the process exited 0 by itself.
func (p *proc) terminate(d time.Duration) error {
	if !p.running() {
		return fmt.Errorf("%s had exited already: %v", p.name, p.err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.err
	case <-time.After(d):
		p.kill9()
		return fmt.Errorf("%s did not exit within %v of SIGTERM", p.name, d)
	}
}

// cluster is a set of replica processes.
type cluster struct {
	t    *testing.T
	reps []*replicaProc
}

// replicaProc is one `spoolfs replica` process and what it needs to
// restart on the same address and data.
type replicaProc struct {
	*proc
	addr, data string
	extra      []string            // more flags (--tls-*)
	log        *testsupport.Buffer // every run's output
}

// newCluster starts n replicas on free loopback ports; they are killed in
// t.Cleanup.
func newCluster(t *testing.T, n int) *cluster { return newClusterWith(t, n, nil) }

// newClusterWith is newCluster with more flags for replica i from extra.
func newClusterWith(t *testing.T, n int, extra func(i int) []string) *cluster {
	t.Helper()
	c := &cluster{t: t}
	base := t.TempDir()
	for i := 0; i < n; i++ {
		r := &replicaProc{addr: testsupport.FreeAddr(t), data: filepath.Join(base, fmt.Sprintf("replica-%d", i+1)), log: &testsupport.Buffer{}}
		if extra != nil {
			r.extra = extra(i)
		}
		c.reps = append(c.reps, r)
		c.start(i)
	}
	t.Cleanup(func() {
		for i, r := range c.reps {
			if r.proc != nil && r.running() {
				r.kill9()
			}
			if t.Failed() {
				t.Logf("replica %d (%s) output (last lines):\n%s", i+1, r.addr, lastLines(r.log.String(), 15))
			}
		}
	})
	return c
}

// start (re)starts replica i and waits until it accepts connections.
func (c *cluster) start(i int) {
	c.t.Helper()
	c.startWithin(i, replicaDeadline)
}

// startWithin is start with the deadline d (a replica loads its volumes
// before it listens: a large one takes longer than replicaDeadline).
func (c *cluster) startWithin(i int, d time.Duration) {
	c.t.Helper()
	r := c.reps[i]
	fmt.Fprintf(r.log, "--- start\n")
	p, err := startProc(fmt.Sprintf("replica %d", i+1), r.log, append([]string{"replica", "--listen", r.addr, "--data", r.data}, r.extra...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	r.proc = p
	deadline := time.Now().Add(d)
	for {
		conn, err := net.DialTimeout("tcp", r.addr, time.Second)
		if err == nil {
			conn.Close()
			return
		}
		if !p.running() || time.Now().After(deadline) {
			c.t.Fatalf("replica %d on %s did not start: %v (exit: %v)\n%s", i+1, r.addr, err, p.err, p.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill SIGKILLs replica i.
func (c *cluster) kill(i int) { c.reps[i].kill9() }

func (c *cluster) addrs() string {
	var a []string
	for _, r := range c.reps {
		a = append(a, r.addr)
	}
	return strings.Join(a, ",")
}

// lsns asks each running replica for the volume's lsn (0 when it does not
// answer).
func (c *cluster) lsns(volume string) []uint64 {
	out := make([]uint64, len(c.reps))
	for i, r := range c.reps {
		out[i] = replicaLSN(r.addr, volume)
	}
	return out
}

func replicaLSN(addr, volume string) uint64 { return replicaStatus(addr, volume).GetLsn() }

// replicaStatus asks a replica for one volume's status (nil if it cannot).
func replicaStatus(addr, volume string) *pb.VolumeStatus {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := pb.NewReplicaClient(conn).Status(ctx, &pb.StatusRequest{Volume: volume})
	if err != nil || len(resp.Volumes) == 0 {
		return nil
	}
	return resp.Volumes[0]
}

// compactions sums the file rewrites the running replicas report.
func (c *cluster) compactions(volume string) uint64 {
	var n uint64
	for _, r := range c.reps {
		n += replicaStatus(r.addr, volume).GetCompactions()
	}
	return n
}

// primary is one primary process and its mount point.
type primary struct {
	*proc
	dir string
}

// startPrimary starts `spoolfs mount --replicas ADDRS VOLUME DIR` on a
// fresh mount point and waits until the mount answers. The mount is
// detached and the process killed in t.Cleanup if still there.
func (c *cluster) startPrimary(volume, nodeID string, extra ...string) *primary {
	c.t.Helper()
	dir := mountPoint(c.t)
	p, err := startProc("primary "+nodeID, &testsupport.Buffer{}, primaryArgs(volume, dir, c.addrs(), nodeID, extra)...)
	if err != nil {
		c.t.Fatal(err)
	}
	pr := &primary{proc: p, dir: dir}
	c.t.Cleanup(func() { pr.cleanup(c.t) })
	sp := &spoolfsProc{Dir: dir, cmd: p.cmd, stderr: p.out, exited: p.exited}
	if err := sp.waitServed(); err != nil {
		c.t.Fatalf("%s: %v\noutput:\n%s", p.name, err, lastLines(p.out.String(), 30))
	}
	return pr
}

// primaryArgs is the command line of a primary.
func primaryArgs(volume, dir, replicas, nodeID string, extra []string) []string {
	args := []string{"mount", "--replicas", replicas, "--node-id", nodeID}
	return append(append(args, extra...), volume, dir)
}

// cleanup kills a primary still running and detaches its mount.
func (pr *primary) cleanup(t *testing.T) {
	if pr.running() {
		pr.kill9()
	}
	if isMounted(pr.dir, "") {
		_ = unix.Unmount(pr.dir, unix.MNT_DETACH)
	}
	if t.Failed() {
		t.Logf("%s output (last lines):\n%s", pr.name, lastLines(pr.out.String(), 40))
	}
}

// crash SIGKILLs the primary and detaches its dead mount.
func (pr *primary) crash() {
	pr.kill9()
	_ = unix.Unmount(pr.dir, unix.MNT_DETACH)
}

// stop SIGTERMs the primary: it must unmount and exit 0.
func (pr *primary) stop(t *testing.T) {
	t.Helper()
	if err := pr.terminate(unmountDeadline); err != nil {
		t.Errorf("%s: %v", pr.name, err)
	}
	if isMounted(pr.dir, "") {
		t.Errorf("%s is still mounted after %s stopped", pr.dir, pr.name)
	}
}

// path is a name inside the primary's mount.
func (pr *primary) path(name string) string { return filepath.Join(pr.dir, name) }
