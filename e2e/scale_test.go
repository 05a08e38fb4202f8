package e2e

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// Scale and limits of issue 13 (fsactor/arena.go, fsactor/limits.go): run
// on the real binary, built without -race, because 200,000 files through
// FUSE take minutes under the race detector (docs/testing.md).

// mountSpoolfsNofile mounts like mountSpoolfs with the child's open-file
// limit set to nofile, soft and hard (prlimit(1) execs the binary: the
// process is spoolfs itself), and checks that spoolfs kept it (it raises
// only up to the hard limit without CAP_SYS_RESOURCE).
func mountSpoolfsNofile(t *testing.T, nofile int, extraArgs ...string) *spoolfsProc {
	t.Helper()
	requireMountable(t)
	needBinary(t)
	prlimit := testsupport.RequireCmd(t, "prlimit")
	// Without the invariants tag: its checks, paced at about 64 inodes'
	// worth per step (fsactor/doc.go), cost about 1 ms per file at 200,000
	// files, minutes for this test; the content is checked by reading it
	// all back. The last -tags wins over TagFlags'.
	plain := testsupport.Binary(t, "-tags=")
	dir := mountPoint(t)
	args := []string{fmt.Sprintf("--nofile=%d:%d", nofile, nofile), "--", plain, "mount", "--local"}
	args = append(append(args, extraArgs...), "e2e-"+sanitize(t.Name()), dir)
	p := &spoolfsProc{Dir: dir, stderr: &testsupport.Buffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(prlimit, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.stderr, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", prlimit, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.stop(t) })
	if err := p.waitServed(); err != nil {
		t.Fatalf("spoolfs mount under prlimit: %v\n%s", err, p.stderr.String())
	}
	if got := procNofile(t, p.cmd.Process.Pid); got != nofile {
		testsupport.Unavailable(t, "spoolfs raised its open-file limit to %d (CAP_SYS_RESOURCE): cannot test %d", got, nofile)
	}
	return p
}

// procNofile reads the soft "Max open files" of pid.
func procNofile(t testing.TB, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			var soft int
			fmt.Sscan(rest, &soft)
			return soft
		}
	}
	t.Fatalf("no open-file limit in /proc/%d/limits", pid)
	return 0
}

// procFds counts the descriptors pid holds.
func procFds(t *testing.T, pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// msgBytes is the content of message k: 1 KiB, different per file.
func msgBytes(k int) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("%08d", k)), 128)
}

// forEach runs f(k) for k in [0, n) on 8 goroutines and returns the first
// error.
func forEach(n int, f func(k int) error) error { return forEachN(n, 8, f) }

// forEachN is forEach with w workers.
func forEachN(n, workers int, f func(k int) error) error {
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := w; k < n; k += workers {
				if err := f(k); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// TestManySmallFiles: 200,000 non-empty files on a --local mount whose
// process may open 20,000 descriptors (before memfd arenas the 19,990th
// failed with EIO): all are written and read back, and the process holds
// a handful of descriptors.
func TestManySmallFiles(t *testing.T) {
	if *flagSubject != "spoolfs" {
		t.Skip("a limit of spoolfs")
	}
	testsupport.SkipShort(t, "200,000 files")
	const n, nofile = 200_000, 20_000
	p := mountSpoolfsNofile(t, nofile)
	for d := range 100 {
		if err := os.Mkdir(filepath.Join(p.Dir, fmt.Sprintf("d%02d", d)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := func(k int) string { return filepath.Join(p.Dir, fmt.Sprintf("d%02d/m%06d", k%100, k)) }
	start := time.Now()
	if err := forEach(n, func(k int) error { return os.WriteFile(path(k), msgBytes(k), 0o640) }); err != nil {
		t.Fatalf("writing %d files: %v", n, err)
	}
	wrote := time.Since(start)
	fds := procFds(t, p.cmd.Process.Pid)
	start = time.Now()
	if err := forEach(n, func(k int) error {
		b, err := os.ReadFile(path(k))
		if err == nil && !bytes.Equal(b, msgBytes(k)) {
			err = fmt.Errorf("%s: %d bytes, not what was written", path(k), len(b))
		}
		return err
	}); err != nil {
		t.Fatalf("reading back: %v", err)
	}
	t.Logf("%d files of 1 KiB: written in %v, read back in %v; spoolfs holds %d descriptors (limit %d)",
		n, wrote.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), fds, nofile)
	if fds > 1000 {
		t.Errorf("spoolfs holds %d descriptors for %d files", fds, n)
	}
	var sf unix.Statfs_t
	if err := unix.Statfs(p.Dir, &sf); err != nil {
		t.Fatal(err)
	}
	if used := (sf.Files - sf.Ffree); used != n+100+1 {
		t.Errorf("df -i: %d inodes used, want %d", used, n+100+1)
	}
	if used := int64(sf.Blocks-sf.Bfree) * sf.Bsize; used != n*1024 {
		t.Errorf("df: %d bytes used, want %d (1 KiB per file)", used, n*1024)
	}
}

// TestLimitsAnswerENOSPC fills a volume past --max-inodes, then past
// --capacity: creates, then writes answer ENOSPC (never EIO), every file
// written before reads back intact, df and df -i say what was written,
// and the metric names each limit.
func TestLimitsAnswerENOSPC(t *testing.T) {
	if *flagSubject != "spoolfs" {
		t.Skip("a limit of spoolfs")
	}
	const files, capacity = 300, 256 << 10
	p := mountSpoolfs(t, "--max-inodes", fmt.Sprint(files+1), "--capacity", fmt.Sprint(capacity))
	path := func(k int) string { return filepath.Join(p.Dir, fmt.Sprintf("m%04d", k)) }
	// Inodes: files empty files, then ENOSPC.
	for k := range files {
		if err := os.WriteFile(path(k), nil, 0o640); err != nil {
			t.Fatalf("file %d of %d: %v", k, files, err)
		}
	}
	if err := os.WriteFile(path(files), nil, 0o640); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("create past --max-inodes: %v, want ENOSPC", err)
	}
	var sf unix.Statfs_t
	if err := unix.Statfs(p.Dir, &sf); err != nil || sf.Files != files+1 || sf.Ffree != 0 {
		t.Fatalf("df -i: %d inodes, %d free (%v); want %d, 0", sf.Files, sf.Ffree, err, files+1)
	}
	// Capacity: 1 KiB into each file until the volume is full.
	full := -1
	for k := range files {
		err := writeSync(path(k), msgBytes(k))
		if errors.Is(err, syscall.ENOSPC) {
			full = k
			break
		}
		if err != nil {
			t.Fatalf("write %d: %v, want success or ENOSPC", k, err)
		}
	}
	if full != capacity/1024 {
		t.Fatalf("ENOSPC at file %d, want %d (%d bytes of capacity, 1 KiB each)", full, capacity/1024, capacity)
	}
	if err := unix.Statfs(p.Dir, &sf); err != nil || sf.Blocks*uint64(sf.Bsize) != capacity || sf.Bfree != 0 {
		t.Fatalf("df: %d blocks of %d, %d free (%v); want %d bytes, 0 free", sf.Blocks, sf.Bsize, sf.Bfree, err, capacity)
	}
	for k := range files {
		want := msgBytes(k)
		switch {
		case k == full:
			continue // the failed write: the kernel's page cache may still show it
		case k > full:
			want = nil
		}
		if b, err := os.ReadFile(path(k)); err != nil || !bytes.Equal(b, want) {
			t.Fatalf("file %d: %d bytes (%v), want %d", k, len(b), err, len(want))
		}
	}
	// Deleting makes room again.
	if err := os.Remove(path(0)); err != nil {
		t.Fatal(err)
	}
	if err := writeSync(path(full), msgBytes(full)); err != nil {
		t.Fatalf("write after a delete: %v", err)
	}
	log := p.stderr.String()
	for _, lim := range []string{`"limit":"inodes"`, `"limit":"capacity"`} {
		if !strings.Contains(log, lim) {
			t.Errorf("no log line with %s", lim)
		}
	}
}

var flagScaleFiles = flag.Int("e2e.scalefiles", 1_000_000, "files of BenchmarkScale (make bench-scale)")

// BenchmarkScale is issue 13's benchmark (make bench-scale; not a timed
// test): e2e.scalefiles files of 1 KiB queued on one --local volume in
// 100 directories by 8 writers; it reports the time to create, list, read
// and delete them, the process's RSS and memfd memory, and the
// descriptors it holds, with every file in place. Figures:
// docs/benchmarks.md.
func BenchmarkScale(b *testing.B) {
	n := *flagScaleFiles
	p := benchMount(b, "--max-inodes", fmt.Sprint(2*n+1000))
	for d := range 100 {
		if err := os.Mkdir(filepath.Join(p.Dir, fmt.Sprintf("d%02d", d)), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	path := func(k int) string { return filepath.Join(p.Dir, fmt.Sprintf("d%02d/m%07d", k%100, k)) }
	pid := p.cmd.Process.Pid
	for range b.N {
		phase := func(name string, f func() error) {
			start := time.Now()
			if err := f(); err != nil {
				b.Fatalf("%s: %v", name, err)
			}
			b.ReportMetric(time.Since(start).Seconds(), name+"-s")
		}
		phase("create", func() error {
			return forEach(n, func(k int) error { return os.WriteFile(path(k), msgBytes(k), 0o640) })
		})
		rss, memfd, fds := procMemory(b, pid)
		b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
		b.ReportMetric(float64(memfd)/(1<<20), "memfd-MiB")
		b.ReportMetric(float64(fds), "fds")
		phase("list", func() error {
			total := 0
			for d := range 100 {
				ents, err := os.ReadDir(filepath.Join(p.Dir, fmt.Sprintf("d%02d", d)))
				if err != nil {
					return err
				}
				total += len(ents)
			}
			if total != n {
				return fmt.Errorf("listed %d files of %d", total, n)
			}
			return nil
		})
		phase("read", func() error {
			return forEach(n, func(k int) error {
				got, err := os.ReadFile(path(k))
				if err == nil && !bytes.Equal(got, msgBytes(k)) {
					err = fmt.Errorf("%s: not what was written", path(k))
				}
				return err
			})
		})
		phase("delete", func() error { return forEach(n, func(k int) error { return os.Remove(path(k)) }) })
	}
}

// benchMount mounts spoolfs --local for a benchmark, stopped at its end.
func benchMount(b *testing.B, extraArgs ...string) *spoolfsProc {
	b.Helper()
	requireMountable(b)
	needBinary(b)
	dir, err := os.MkdirTemp("", "bench-scale")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.Remove(dir) })
	p, err := startSpoolfs(dir, "e2e-bench-scale", extraArgs...)
	if p != nil {
		b.Cleanup(func() { p.stop(b) })
	}
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// procMemory reads pid's RSS, the bytes its memfds hold (st_blocks of
// each memfd it has open) and its descriptor count.
func procMemory(tb testing.TB, pid int) (rss, memfd int64, fds int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			fmt.Sscan(rest, &rss)
			rss <<= 10
		}
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range ents {
		link, _ := os.Readlink(filepath.Join(dir, e.Name()))
		var st unix.Stat_t
		if strings.HasPrefix(link, "/memfd:") && unix.Stat(filepath.Join(dir, e.Name()), &st) == nil {
			memfd += st.Blocks * 512
		}
	}
	return rss, memfd, len(ents)
}

var (
	flagRecoveryFiles = flag.Int("e2e.recoveryfiles", 0, "files of TestScaleRecovery (0: skipped; make bench-scale-recovery)")
	flagRecoveryProf  = flag.String("e2e.recoveryprofile", "", "TestScaleRecovery: a directory for CPU profiles of the next primary and of each replica during its recovery (seconds of e2e.recoveryprofilesecs)")
	flagRecoveryProfS = flag.Int("e2e.recoveryprofilesecs", 20, "TestScaleRecovery: length of the CPU profiles of e2e.recoveryprofile")
	flagRecoverySeed  = flag.String("e2e.recoveryseed", "", "TestScaleRecovery: a directory keeping the replicas' data after the writes, saved by the first run and reused by the next (writing 1,000,000 files takes many minutes; a seed written by an older build may not load)")
)

// TestScaleRecovery is issue 13's recovery benchmark (not a timed test):
// e2e.recoveryfiles files of 1 KiB on a replicated volume, the primary
// SIGKILLed, and the time until the next primary serves every file. With
// e2e.recoveryseed the replicas' data after the writes is kept there and
// the next run starts from a copy of it (the same state: the primary was
// SIGKILLed after its last acknowledged close).
func TestScaleRecovery(t *testing.T) {
	n := *flagRecoveryFiles
	if n == 0 {
		t.Skip("a benchmark: -e2e.recoveryfiles=N (make bench-scale-recovery)")
	}
	requireCluster(t)
	admins := make([]string, 4) // the replicas', then the next primary's
	for i := range admins {
		admins[i] = testsupport.FreeAddr(t)
	}
	c := newClusterWith(t, 3, func(i int) []string { return []string{"--admin", admins[i]} })
	const vol = "scale"
	seed := ""
	if *flagRecoverySeed != "" {
		seed = filepath.Join(*flagRecoverySeed, fmt.Sprintf("files-%d", n))
	}
	rel := func(k int) string { return fmt.Sprintf("d%02d/m%07d", k%100, k) }
	if _, err := os.Stat(filepath.Join(seed, "complete")); seed != "" && err == nil {
		c.loadData(seed)
		t.Logf("replicas started from the seed %s", seed)
	} else {
		writeScaleVolume(t, c, vol, n, rel)
		if seed != "" {
			c.saveData(seed)
		}
	}
	start := time.Now()
	profiled := make(chan struct{})
	go func() {
		defer close(profiled)
		if *flagRecoveryProf != "" {
			cpuProfiles(t, *flagRecoveryProf, admins, *flagRecoveryProfS)
		}
	}()
	pr2 := startPrimaryPatient(t, c, vol, "p2", "--max-inodes", fmt.Sprint(2*n+1000), "--admin", admins[3])
	served := time.Since(start)
	<-profiled
	rss, memfd, fds := procMemory(t, pr2.cmd.Process.Pid)
	if err := forEach(n, func(k int) error {
		b, err := os.ReadFile(pr2.path(rel(k)))
		if err == nil && !bytes.Equal(b, msgBytes(k)) {
			err = fmt.Errorf("%s: not what was written", rel(k))
		}
		return err
	}); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	t.Logf("recovery of %d files: the next primary served after %v (RSS %d MiB, memfd %d MiB, %d descriptors); every file read back",
		n, served.Round(time.Millisecond), rss>>20, memfd>>20, fds)
	t.Logf("primary p2 log:\n%s", lastLines(pr2.out.String(), 15))
}

// cpuProfiles writes a CPU profile of secs seconds of each admin endpoint
// (the replicas', then the next primary's, which starts serving its admin
// endpoint before its recovery) into dir, all at once.
func cpuProfiles(t *testing.T, dir string, admins []string, secs int) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Error(err)
		return
	}
	var wg sync.WaitGroup
	for i, addr := range admins {
		name := fmt.Sprintf("replica-%d.cpu.pprof", i+1)
		if i == len(admins)-1 {
			name = "primary.cpu.pprof"
		}
		wg.Go(func() {
			url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs)
			var resp *http.Response
			var err error
			for range 100 { // the next primary's endpoint comes up a moment later
				if resp, err = http.Get(url); err == nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				t.Errorf("profile %s: %v", url, err)
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, name), b, 0o644)
			}
			if err != nil {
				t.Errorf("profile %s: %v", url, err)
			}
		})
	}
	wg.Wait()
}

// writeScaleVolume writes n files of 1 KiB (msgBytes) at rel(k) in 100
// directories through primary p1, each close durable on W replicas, and
// SIGKILLs p1.
func writeScaleVolume(t *testing.T, c *cluster, vol string, n int, rel func(int) string) {
	t.Helper()
	pr := c.startPrimary(vol, "p1", "--max-inodes", fmt.Sprint(2*n+1000))
	for d := range 100 {
		if err := os.Mkdir(pr.path(fmt.Sprintf("d%02d", d)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	// 32 writers: each close waits for W replicas' fsync, and the
	// replicas commit what arrives together in one fsync.
	if err := forEachN(n, 32, func(k int) error { return os.WriteFile(pr.path(rel(k)), msgBytes(k), 0o640) }); err != nil {
		t.Fatalf("writing: %v", err)
	}
	t.Logf("%d files written on the replicated volume in %v", n, time.Since(start).Round(time.Millisecond))
	pr.crash()
}

// saveData stops the replicas (SIGTERM), copies their data directories
// into dir (replica-1, ...), marks the copy complete, and restarts them.
func (c *cluster) saveData(dir string) {
	c.t.Helper()
	if err := os.RemoveAll(dir); err != nil {
		c.t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	for i, r := range c.reps {
		if err := r.terminate(time.Minute); err != nil {
			c.t.Fatalf("replica %d: %v", i+1, err)
		}
		copyTree(c.t, r.data, filepath.Join(dir, fmt.Sprintf("replica-%d", i+1)))
	}
	if err := os.WriteFile(filepath.Join(dir, "complete"), nil, 0o644); err != nil {
		c.t.Fatal(err)
	}
	c.t.Logf("replicas' data saved in %s", dir)
	c.startAll()
}

// loadData replaces the replicas' data directories with a copy of the
// ones saveData kept in dir, and restarts them.
func (c *cluster) loadData(dir string) {
	c.t.Helper()
	for i, r := range c.reps {
		r.kill9()
		if err := os.RemoveAll(r.data); err != nil {
			c.t.Fatal(err)
		}
		copyTree(c.t, filepath.Join(dir, fmt.Sprintf("replica-%d", i+1)), r.data)
	}
	// The copies are gigabytes of dirty pages: written back now, not by
	// the kernel's flusher during the recovery the test measures.
	syscall.Sync()
	c.startAll()
}

// startAll restarts every replica, patiently: each loads the whole large
// volume before it listens.
func (c *cluster) startAll() {
	c.t.Helper()
	start := time.Now()
	for i := range c.reps {
		c.startWithin(i, 10*time.Minute)
	}
	c.t.Logf("replicas restarted in %v", time.Since(start).Round(time.Millisecond))
}

// copyTree copies the directory from to to (cp -a).
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v\n%s", from, to, err, out)
	}
}

// startPrimaryPatient is cluster.startPrimary without its 15 s deadline:
// recovering a large volume takes longer (the test measures how long).
func startPrimaryPatient(t *testing.T, c *cluster, volume, nodeID string, extra ...string) *primary {
	t.Helper()
	dir := mountPoint(t)
	p, err := startProc("primary "+nodeID, &testsupport.Buffer{}, primaryArgs(volume, dir, c.addrs(), nodeID, extra)...)
	if err != nil {
		t.Fatal(err)
	}
	pr := &primary{proc: p, dir: dir}
	t.Cleanup(func() { pr.cleanup(t) })
	testsupport.WaitFor(t, 10*time.Minute, nodeID+" mounted", func() bool { return !p.running() || isMounted(dir, "fuse.spoolfs") })
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil || !p.running() {
		t.Fatalf("%s: not serving (%v)\n%s", nodeID, err, lastLines(p.out.String(), 30))
	}
	return pr
}
