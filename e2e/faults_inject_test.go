package e2e

// The processes and faults of the fault-injection test (faults_test.go):
// primaries with their client processes, timed kills, and each fault's
// inject and heal.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// fprimary is one primary of the fault test and the client working on it.
type fprimary struct {
	*primary
	id     string     // node id, and the prefix of its client's messages
	conn   string     // its FUSE connection in /sys/fs/fuse/connections
	stops  [][2]int64 // SIGSTOP intervals (CLOCK_MONOTONIC); an open one ends at 0
	client *fclientProc
	dead   bool // killed
}

// fclientProc is a client process (faults_client_test.go) seen from the test.
type fclientProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *testsupport.Buffer
	read   chan struct{} // closed when all its output was read
	exited chan struct{}
}

// startPrimary starts a primary on a fresh mount point through the
// proxies and waits until it serves.
func (e *faultEnv) startPrimary(id string) *fprimary {
	e.t.Helper()
	dir := mountPoint(e.t)
	args := primaryArgs(e.vol, dir, e.proxyAddrs(), id,
		[]string{"--flush-timeout", e.flush.String(), "--acquire-timeout", "30s"})
	p, err := startProc("primary "+id, &testsupport.Buffer{}, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	pr := &primary{proc: p, dir: dir}
	e.t.Cleanup(func() { pr.cleanup(e.t) })
	sp := &spoolfsProc{Dir: dir, cmd: p.cmd, stderr: p.out, exited: p.exited}
	if err := sp.waitServed(); err != nil {
		e.t.Fatalf("%s: %v\noutput:\n%s", p.name, err, lastLines(p.out.String(), 30))
	}
	fp := &fprimary{primary: pr, id: id, conn: testsupport.FUSEConn(dir)}
	e.prims = append(e.prims, fp)
	return fp
}

// startClient starts the client process on p.
func (e *faultEnv) startClient(p *fprimary) {
	e.t.Helper()
	cfg, _ := json.Marshal(faultClientConfig{Dir: p.dir, Prefix: p.id, Writers: e.writers,
		Slow: e.flush, Grace: e.flush + 2*time.Second, Dead: e.dead})
	self, err := os.Executable()
	if err != nil {
		e.t.Fatal(err)
	}
	c := &fclientProc{stderr: &testsupport.Buffer{}, read: make(chan struct{}), exited: make(chan struct{})}
	c.cmd = exec.Command(self)
	c.cmd.Env = append(os.Environ(), faultClientEnv+"="+string(cfg))
	c.cmd.Stderr = c.stderr
	out, err := c.cmd.StdoutPipe()
	if err == nil {
		c.stdin, err = c.cmd.StdinPipe()
	}
	if err == nil {
		err = c.cmd.Start()
	}
	if err != nil {
		e.t.Fatalf("client of %s: %v", p.id, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			e.led.apply(p.id, sc.Text())
		}
		close(c.read)
	}()
	go func() { <-c.read; _ = c.cmd.Wait(); close(c.exited) }()
	p.client = c
}

// stopClient tells p's client to stop and waits for its last line. A
// client that does not exit has calls stuck on a hung mount: the mount's
// connection is aborted so they return (the stuck calls were reported).
func (e *faultEnv) stopClient(p *fprimary) {
	c := p.client
	if c == nil {
		return
	}
	p.client = nil
	_ = c.stdin.Close()
	select {
	case <-c.exited:
		return
	case <-time.After(e.flush + 10*time.Second):
	}
	e.t.Errorf("client of %s did not exit: aborting the FUSE connection %s", p.id, p.conn)
	testsupport.AbortFUSE(e.t, p.conn)
	_ = c.cmd.Process.Kill()
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		e.t.Fatalf("client of %s still there after its mount was aborted", p.id)
	}
}

// killTimed SIGKILLs p and measures the time until it is reaped. A
// process still there after 5 s has its FUSE connection aborted (conn,
// if it serves one) so it can die.
func (e *faultEnv) killTimed(p *proc, conn string) {
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		e.t.Errorf("%s still not reaped 5s after SIGKILL: aborting its FUSE connection %q", p.name, conn)
		if conn != "" {
			testsupport.AbortFUSE(e.t, conn)
		}
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			e.t.Fatalf("%s not reaped 15s after SIGKILL", p.name)
		}
	}
	took := time.Since(start)
	e.led.mu.Lock()
	defer e.led.mu.Unlock()
	e.led.c.kills++
	e.led.c.maxKill = max(e.led.c.maxKill, took)
	if took > time.Second {
		e.led.c.slowKills++
		e.led.fail(nil, "SLOW KILL: %s reaped %v after SIGKILL", p.name, took.Round(time.Millisecond))
	}
}

// killPrimary kills p (SIGCONT first is not needed: SIGKILL ends a
// stopped process), stops its client and detaches the dead mount.
func (e *faultEnv) killPrimary(p *fprimary) {
	if p.dead {
		return
	}
	p.dead = true
	e.dead = append(e.dead, p.id)
	e.killTimed(p.proc, p.conn)
	p.contStop()
	e.stopClient(p)
	_ = unix.Unmount(p.dir, unix.MNT_DETACH)
}

// stopPrimary and contPrimary SIGSTOP and SIGCONT p, noting when.
func (p *fprimary) stopPrimary() {
	_ = p.cmd.Process.Signal(syscall.SIGSTOP)
	p.stops = append(p.stops, [2]int64{monoNow(), 0})
}

func (p *fprimary) contPrimary() {
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	p.contStop()
}

// contStop closes an open stop interval.
func (p *fprimary) contStop() {
	if n := len(p.stops); n > 0 && p.stops[n-1][1] == 0 {
		p.stops[n-1][1] = monoNow()
	}
}

// stoppedDuring is how long p was stopped between t0 and t1.
func (p *fprimary) stoppedDuring(t0, t1 int64) time.Duration {
	var d int64
	for _, s := range p.stops {
		end := s[1]
		if end == 0 {
			end = t1
		}
		if lo, hi := max(s[0], t0), min(end, t1); hi > lo {
			d += hi - lo
		}
	}
	return time.Duration(d)
}

// fault is one fault of a trial: inject starts it, heal ends it.
type fault struct {
	kind      string
	inject    func()
	heal      func()
	rep       int  // the replica it hits first, -1 for none
	movesPrim bool // it replaces the primary: never overlapped with another fault
}

// Fault kinds.
const (
	fkKillPrimary   = "kill-primary"
	fkStopPrimary   = "stop-primary"
	fkSecondPrimary = "second-primary"
	fkKillReplica   = "kill-replica"
	fkStopReplica   = "stop-replica"
	fkPartition1    = "partition-1"
	fkPartition2    = "partition-2"
	fkReset         = "reset"
	fkDiskFull      = "disk-full"
)

var faultKinds = []string{fkKillPrimary, fkStopPrimary, fkSecondPrimary, fkKillReplica, fkStopReplica,
	fkPartition1, fkPartition2, fkReset, fkDiskFull}

// newFault builds a fault of kind on replicas chosen by the trial's rng,
// other than avoid (the replica of a fault it overlaps).
func (e *faultEnv) newFault(kind string, avoid int) *fault {
	n := len(e.c.reps)
	r := e.rng.IntN(n)
	for r == avoid {
		r = e.rng.IntN(n)
	}
	r2 := (r + 1 + e.rng.IntN(n-1)) % n
	f := &fault{kind: kind, rep: -1}
	if strings.Contains(kind, "replica") || strings.HasPrefix(kind, "partition") || kind == fkDiskFull {
		f.rep = r
	}
	switch kind {
	case fkKillPrimary:
		f.movesPrim = true
		f.inject = func() { e.killPrimary(e.cur) }
		f.heal = func() { e.cur = e.startPrimary(e.nextID()); e.startClient(e.cur) }
	case fkStopPrimary:
		p := e.cur
		f.inject, f.heal = p.stopPrimary, p.contPrimary
	case fkSecondPrimary:
		f.movesPrim = true
		old := e.cur
		f.inject = func() {
			old.stopPrimary()
			e.cur = e.startPrimary(e.nextID())
			e.startClient(e.cur)
		}
		f.heal = old.contPrimary // it learns it was fenced; killed at the end of the trial
	case fkKillReplica:
		f.kind += fmt.Sprintf(" %d", r+1)
		f.inject = func() { e.killTimed(e.c.reps[r].proc, "") }
		f.heal = func() { e.c.start(r) }
	case fkStopReplica:
		f.kind += fmt.Sprintf(" %d", r+1)
		f.inject = func() { _ = e.c.reps[r].cmd.Process.Signal(syscall.SIGSTOP) }
		f.heal = func() { _ = e.c.reps[r].cmd.Process.Signal(syscall.SIGCONT) }
	case fkPartition1:
		f.kind += fmt.Sprintf(" %d", r+1)
		f.inject, f.heal = e.proxies[r].Blackhole, e.proxies[r].Heal
	case fkPartition2:
		f.kind += fmt.Sprintf(" %d+%d", r+1, r2+1)
		f.inject = func() { e.proxies[r].Blackhole(); e.proxies[r2].Blackhole() }
		f.heal = func() { e.proxies[r].Heal(); e.proxies[r2].Heal() }
	case fkReset:
		f.inject = func() {
			for _, p := range e.proxies {
				p.Reset()
			}
		}
		f.heal = func() {
			for _, p := range e.proxies {
				p.Heal()
			}
		}
	case fkDiskFull:
		f.kind += fmt.Sprintf(" %d", r+1)
		f.inject = func() { e.fillDisk(r) }
		f.heal = func() { _ = os.Remove(e.fillPath(r)) }
	default:
		e.t.Fatalf("unknown fault kind %q", kind)
	}
	return f
}

func (e *faultEnv) fillPath(r int) string { return filepath.Join(e.disks[r], "fill") }

// fillDisk leaves 128 KiB free on replica r's file system.
func (e *faultEnv) fillDisk(r int) {
	var st unix.Statfs_t
	if err := unix.Statfs(e.disks[r], &st); err != nil {
		e.t.Fatal(err)
	}
	size := int64(st.Bavail)*st.Bsize - 128<<10
	if size <= 0 {
		return
	}
	fd, err := unix.Open(e.fillPath(r), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		e.t.Fatal(err)
	}
	defer unix.Close(fd)
	// The replica writes meanwhile: on ENOSPC, try 1 MiB less.
	for ; size > 0; size -= 1 << 20 {
		if err := unix.Fallocate(fd, 0, 0, size); err != unix.ENOSPC {
			return
		}
	}
}
