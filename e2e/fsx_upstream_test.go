package e2e

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// The real fsx: xfstests' ltp/fsx.c, vendored in third_party/fsx and built
// with gcc by the test, run with the profiles xfstests runs it with
// (tests/generic/075, 091, 127, 263, 469) on a --local mount and on a
// replicated mount. The Go port (fsx_test.go) stays beside it: it targets
// spoolfs' slot/memfd crossings, drops the page cache to read the server,
// and runs on tmpfs to check itself.

// fsxSource is the vendored fsx, relative to the e2e package directory.
const fsxSource = "../third_party/fsx"

// fsxBuildArgs are xfstests' own compiler flags (include/builddefs.in,
// ltp/Makefile) without -DAIO, -DURING and -DXFS (third_party/fsx/README.md).
var fsxBuildArgs = []string{
	"-O2", "-g", "-std=gnu11", "-funsigned-char", "-fno-strict-aliasing", "-Wall",
	"-D_GNU_SOURCE", "-D_FILE_OFFSET_BITS=64", "-DFALLOCATE", "-DHAVE_COPY_FILE_RANGE",
	"-I" + fsxSource, "-I" + fsxSource + "/src",
	fsxSource + "/ltp/fsx.c",
}

// fsxBinary builds fsx once per test binary (testsupport.CBinary).
func fsxBinary(t *testing.T) string {
	t.Helper()
	return testsupport.CBinary(t, "fsx", fsxBuildArgs...)
}

// upstreamProfile is one fsx command line from xfstests. args may hold
// PSIZE and BSIZE, replaced as xfstests' _run_fsx does (page size, the
// file system's block size); -N is added from ops (FSX_OPS or -fsx.ops
// replaces it: the long form).
type upstreamProfile struct {
	name    string
	args    string
	ops     int    // short form; xfstests' own count is in the comment
	presize int64  // the file is made this long first (fsx -L keeps the size)
	replay  string // a --replay-ops script (generic/469) instead of random ops
}

// upstreamProfiles run in parallel on one --local mount, as generic/127
// runs its four fsx at once.
var upstreamProfiles = []upstreamProfile{
	// generic/075 (-N 1000, then -N 10000 -l 10M); -d -S 0 there.
	{name: "075", args: "-q", ops: 1000},
	{name: "075-10M", args: "-q -l 10485760", ops: 1000},
	// generic/127 (-N 100000 each, -S 191110531).
	{name: "127-lite-nommap", args: "-q -l 262144 -o 65536 -L -R -W", ops: 2000, presize: 262144},
	{name: "127-lite-mmap", args: "-q -l 262144 -o 65536 -L", ops: 2000, presize: 262144},
	{name: "127-std-nommap", args: "-q -l 262144 -o 65536 -R -W", ops: 3000},
	{name: "127-std-mmap", args: "-q -l 262144 -o 65536", ops: 3000},
	{name: "127-std-mmap-flush", args: "-q -f -l 262144 -o 65536", ops: 1000},
	// generic/091 and 263 (-N 10000): O_DIRECT (-Z) mixed with buffered I/O.
	{name: "091-dio", args: "-q -o 32768 -l 500000 -r PSIZE -t BSIZE -w BSIZE -Z -R -W", ops: 1000},
	{name: "091-dio-128k", args: "-q -o 128000 -l 500000 -r PSIZE -t BSIZE -w BSIZE -Z -W", ops: 1000},
	{name: "263-dio-mmap", args: "-q -o 128000 -l 500000 -r PSIZE -t BSIZE -w BSIZE -Z", ops: 1000},
	// spoolfs' own: a file that stays in an arena slot (≤ 64 KiB).
	{name: "slot", args: "-q -l 16384 -o 4096", ops: 3000},
	// generic/469: fallocate, write, truncate, punch/zero and mapread on
	// small unaligned ranges (stale page cache beyond EOF), with and
	// without fsync after each write (-y).
	{name: "469-0", args: "", replay: fsx469[0]},
	{name: "469-0-fsync", args: "-y", replay: fsx469[0]},
	{name: "469-1", args: "", replay: fsx469[1]},
	{name: "469-1-fsync", args: "-y", replay: fsx469[1]},
	{name: "469-2", args: "", replay: fsx469[2]},
	{name: "469-2-fsync", args: "-y", replay: fsx469[2]},
	{name: "469-3", args: "", replay: fsx469[3]},
	{name: "469-3-fsync", args: "-y", replay: fsx469[3]},
}

// fsx469 are generic/469's operation scripts, verbatim but for comments.
var fsx469 = [4]string{
	"fallocate 0x0 0x1000 0x0 keep_size\nwrite 0x0 0x1000 0x0\ntruncate 0x0 0x10 0x1000\npunch_hole 0x0 0x10 0x10\nmapread 0x0 0x10 0x10\n",
	"fallocate 0x0 0x1000 0x0 keep_size\nwrite 0x0 0x1000 0x0\ntruncate 0x0 0x10 0x1000\nmapread 0x0 0x10 0x10\n",
	"fallocate 0x0 0x1000 0x0\nwrite 0x0 0x1000 0x0\ntruncate 0x0 0x10 0x1000\npunch_hole 0x0 0x10 0x10\nmapread 0x0 0x10 0x10\n",
	"fallocate 0x35870 0xa790 0x0 keep_size\nwrite 0x2aa50 0xc37f 0x0\ntruncate 0x0 0x36dcd 0x36dcf\nzero_range 0x35849 0x1584 0x36dcd\nmapread 0x361c8 0xc05 0x36dcd\n",
}

// fsxMustRun are the ops fsx must find supported on spoolfs, as its
// "disabling!" lines name them: fallocate modes 0 and KEEP_SIZE, punch
// and zero range (issue 13), and copy_file_range (which the kernel serves
// by splicing: jacobsa/fuse answers FUSE_COPY_FILE_RANGE with ENOSYS).
var fsxMustRun = []string{"mode 0,", "mode FALLOC_FL_KEEP_SIZE,", "mode FALLOC_FL_PUNCH_HOLE", "mode FALLOC_FL_ZERO_RANGE,", "copy range,"}

// fsxUpstreamDeadline bounds the short form of each top-level test; the
// long form (FSX_OPS) gets an hour.
func fsxUpstreamDeadline() time.Duration {
	if fsxOps(0) > 0 {
		return time.Hour
	}
	return defaultDeadline
}

// TestFSXUpstream runs xfstests' fsx profiles in parallel on one --local
// mount (on tmpfs with -e2e.subject=tmpfs), and generic/127's std profile
// on a mount with --writeback-cache=false.
func TestFSXUpstream(t *testing.T) {
	requireMountable(t)
	fsx := fsxBinary(t)
	seed := fsxSeed(t)
	sub, proc := mountSubject(t)
	nowb, nowbProc := mountSubject(t, "--writeback-cache=false")
	for _, p := range []*spoolfsProc{proc, nowbProc} {
		if p != nil {
			(&fsPair{proc: p}).deadline(t, fsxUpstreamDeadline())
		}
	}
	fsxProbe(t, fsx, sub)
	var mu sync.Mutex
	total := opCounts{}
	run := func(t *testing.T, dir string, prof upstreamProfile, seed int64) {
		t.Parallel()
		ops := runUpstreamFSX(t, fsx, filepath.Join(dir, "fsx-"+prof.name), prof, seed)
		mu.Lock()
		defer mu.Unlock()
		total.add(ops)
	}
	t.Run("profiles", func(t *testing.T) {
		for i, prof := range upstreamProfiles {
			t.Run(prof.name, func(t *testing.T) { run(t, sub, prof, fsxSeedN(seed, i)) })
		}
		nowbProf := upstreamProfile{name: "127-std-mmap-nowb", args: "-q -l 262144 -o 65536", ops: 2000}
		t.Run(nowbProf.name, func(t *testing.T) { run(t, nowb, nowbProf, fsxSeedN(seed, len(upstreamProfiles))) })
	})
	t.Logf("fsx ran, over all profiles (the last ≤ 10,000 ops of each): %s", total)
}

// TestFSXUpstreamReplicated runs generic/127's std profile (also with an
// fsync after each write), generic/091's O_DIRECT profile and
// generic/075's 10 MiB one at once on a replicated mount, then stops the
// primary and checks that a new primary recovered from the replicas
// serves the same bytes as the first one did after fsx had checked them.
func TestFSXUpstreamReplicated(t *testing.T) {
	requireCluster(t)
	fsx := fsxBinary(t)
	seed := fsxSeed(t)
	c := newCluster(t, 3)
	const vol = "fsxup"
	pr := c.startPrimary(vol, "p1")
	(&fsPair{proc: &spoolfsProc{Dir: pr.dir, cmd: pr.cmd}}).deadline(t, fsxUpstreamDeadline())
	profs := []upstreamProfile{
		{name: "127-std-mmap", args: "-q -l 262144 -o 65536", ops: 3000},
		{name: "091-dio", args: "-q -o 32768 -l 500000 -r PSIZE -t BSIZE -w BSIZE -Z -R -W", ops: 1000},
		{name: "075-10M", args: "-q -l 10485760", ops: 1000},
		// fsync after each write (-y, as generic/469): each FSYNC ships
		// the ranges written since the last one (issue 13). Not fsx -c
		// (close and reopen): it drops the whole machine's page cache.
		{name: "127-std-fsync", args: "-q -l 262144 -o 65536 -y", ops: 1000},
	}
	t.Run("profiles", func(t *testing.T) {
		for i, prof := range profs {
			t.Run(prof.name, func(t *testing.T) {
				t.Parallel()
				runUpstreamFSX(t, fsx, pr.path("fsx-"+prof.name), prof, fsxSeedN(seed, i))
			})
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	before := map[string][sha256.Size]byte{}
	for _, prof := range profs {
		before[prof.name] = fileSum(t, pr.path("fsx-"+prof.name))
	}
	if waitConverged(t, c, vol) == 0 {
		t.FailNow()
	}
	pr.stop(t)
	p2 := c.startPrimary(vol, "p2")
	defer p2.stop(t)
	for _, prof := range profs {
		got := fileSum(t, p2.path("fsx-"+prof.name))
		if got != before[prof.name] {
			t.Errorf("fsx-%s: the recovered primary serves other bytes than the first one (sha256 %x, was %x)", prof.name, got, before[prof.name])
			continue
		}
		t.Logf("fsx-%s: the recovered primary serves the same bytes (sha256 %x)", prof.name, got[:8])
	}
}

// fsxSeedN is profile i's seed for fsx -S: positive, never 0 (which
// would make fsx pick one from the clock).
func fsxSeedN(seed uint64, i int) int64 {
	return int64((seed+uint64(i))%(1<<31-1)) + 1
}

// fsxProbe runs fsx with no operations, as the first thing each fsx run
// does: it tries every optional op once and prints those the file system
// rejects ("disabling!"). The list is logged (docs/testing.md records
// it), and on spoolfs none of fsxMustRun may be in it.
func fsxProbe(t *testing.T, fsx, dir string) {
	t.Helper()
	for _, args := range [][]string{{}, {"-Z"}} {
		name := filepath.Join(dir, "fsx-probe")
		out, err := exec.Command(fsx, append(args, "-N", "0", "-P", t.TempDir(), name)...).CombinedOutput()
		if err != nil {
			t.Fatalf("fsx probe %v: %v\n%s", args, err, out)
		}
		var disabled []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "disabling") || strings.Contains(l, "DISABLED") {
				disabled = append(disabled, strings.TrimPrefix(l, "main: "))
			}
		}
		t.Logf("fsx %v on %s disables:\n  %s", args, *flagSubject, strings.Join(disabled, "\n  "))
		if *flagSubject != "spoolfs" {
			continue
		}
		for _, d := range disabled {
			for _, op := range fsxMustRun {
				if strings.Contains(d, op) {
					t.Errorf("fsx %v finds %s unsupported on spoolfs: %q", args, op, d)
				}
			}
		}
		if err := os.Remove(name); err != nil {
			t.Fatal(err)
		}
	}
}

// runUpstreamFSX runs fsx on path with prof; fsx writes its .fsxlog,
// .fsxgood and recorded ops outside the mount. A failure prints fsx's
// output and log and keeps those files, with the bad file, in a directory
// it names (FSX_KEEP, or a new one under the temporary directory). It
// returns the operations fsx ran, by kind.
func runUpstreamFSX(t *testing.T, fsx, path string, prof upstreamProfile, seed int64) opCounts {
	logDir := t.TempDir()
	args := fsxArgs(t, prof, filepath.Dir(path), seed)
	args = append(args, "-P", logDir, "--record-ops")
	if prof.replay != "" {
		script := filepath.Join(logDir, "replay.fsxops")
		if err := os.WriteFile(script, []byte(prof.replay), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--replay-ops", script)
	}
	if prof.presize > 0 {
		if err := os.WriteFile(path, make([]byte, prof.presize), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args = append(args, path)
	ctx, cancel := context.WithTimeout(context.Background(), fsxUpstreamDeadline())
	defer cancel()
	cmd := exec.CommandContext(ctx, fsx, args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("fsx %s: %v (exit status: 1xx = fsx found wrong data or a failed call)\n%s", strings.Join(args, " "), err, lastLines(string(out), 200))
		fsxKeep(t, logDir, path)
		return nil
	}
	ok := okLine(out)
	if ok == "" {
		t.Errorf("fsx %s: exit 0 without A-OK:\n%s", strings.Join(args, " "), lastLines(string(out), 200))
	}
	ops := fsxOpCounts(t, filepath.Join(logDir, filepath.Base(path)+".fsxops"))
	t.Logf("fsx %s: %s in %v; the last ≤ 10,000 ops: %s", strings.Join(args, " "), ok, time.Since(start).Round(time.Millisecond), ops)
	return ops
}

// okLine is fsx's "All N operations completed A-OK!", or "".
func okLine(out []byte) string {
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "operations completed A-OK") {
			return l
		}
	}
	return ""
}

// opCounts counts fsx operations by kind.
type opCounts map[string]int

// add adds o's counts to c.
func (c opCounts) add(o opCounts) {
	for k, n := range o {
		c[k] += n
	}
}

// String lists the counts by kind, sorted.
func (c opCounts) String() string {
	kinds := make([]string, 0, len(c))
	for k := range c {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var b strings.Builder
	for i, k := range kinds {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", k, c[k])
	}
	return b.String()
}

// fsxOpCounts counts the operations of the ops file fsx --record-ops
// wrote: one a line, by kind ("skip KIND" for one it chose but left out,
// e.g. a disabled op). fsx writes it from its log, which keeps the last
// 10,000 operations (LOGSIZE): a sample of a longer run.
func fsxOpCounts(t *testing.T, path string) opCounts {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("fsx's recorded ops: %v", err)
		return nil
	}
	c := opCounts{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 0 || strings.HasPrefix(f[0], "#"):
		case f[0] == "skip" && len(f) > 1:
			c["skip "+f[1]]++
		default:
			c[f[0]]++
		}
	}
	return c
}

// fsxArgs is prof's command line: PSIZE and BSIZE replaced (the page
// size, and the st_blksize of the mount's root, as xfstests' _run_fsx),
// -N ops, -S seed.
func fsxArgs(t *testing.T, prof upstreamProfile, dir string, seed int64) []string {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	repl := strings.NewReplacer("PSIZE", strconv.Itoa(os.Getpagesize()), "BSIZE", strconv.FormatInt(int64(st.Blksize), 10))
	args := strings.Fields(repl.Replace(prof.args))
	if prof.replay == "" {
		args = append(args, "-N", strconv.Itoa(fsxOps(prof.ops)))
	}
	return append(args, "-S", strconv.FormatInt(seed, 10))
}

// fsxKeep copies fsx's files of a failed run (.fsxlog, .fsxgood, the
// recorded .fsxops: its last 10,000 ops, for fsx --replay-ops; a longer
// run replays whole from its printed -S seed) and the file as
// the file system has it (.fsxbad) to a directory that outlives the test,
// and prints the log's tail.
func fsxKeep(t *testing.T, logDir, path string) {
	keep := os.Getenv("FSX_KEEP")
	if keep == "" {
		var err error
		if keep, err = os.MkdirTemp("", "spoolfs-fsx-failure-"); err != nil {
			t.Errorf("keeping fsx's files: %v", err)
			return
		}
	}
	keep = filepath.Join(keep, filepath.Base(path))
	if err := os.MkdirAll(keep, 0o755); err != nil {
		t.Errorf("keeping fsx's files: %v", err)
		return
	}
	ents, _ := os.ReadDir(logDir)
	for _, e := range ents {
		copyFile(t, filepath.Join(logDir, e.Name()), filepath.Join(keep, e.Name()))
		if strings.HasSuffix(e.Name(), ".fsxlog") {
			b, _ := os.ReadFile(filepath.Join(logDir, e.Name()))
			t.Logf("%s (last lines):\n%s", e.Name(), lastLines(string(b), 60))
		}
	}
	copyFile(t, path, filepath.Join(keep, filepath.Base(path)+".fsxbad"))
	t.Logf("fsx's files are kept in %s (compare .fsxgood with .fsxbad: cmp -l)", keep)
}

// copyFile copies src to dst, reporting (not failing on) an error: it
// runs on a failure path, maybe on a dead mount.
func copyFile(t *testing.T, src, dst string) {
	in, err := os.Open(src)
	if err != nil {
		t.Logf("copy %s: %v", src, err)
		return
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Logf("copy %s: %v", src, err)
		return
	}
	_, err = io.Copy(out, in)
	if err = errors.Join(err, out.Close()); err != nil {
		t.Logf("copy %s: %v", src, err)
	}
}

// fileSum is the sha256 of the file at path.
func fileSum(t *testing.T, path string) [sha256.Size]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(fmt.Errorf("read %s: %w", path, err))
	}
	return sha256.Sum256(b)
}
