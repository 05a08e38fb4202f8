package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

func TestMain(m *testing.M) { os.Exit(testsupport.Run(m)) }

// requireMount ends a test that cannot mount here (testsupport's CI rule:
// fails under CI=true): the benchmarks mount tmpfs and FUSE as root.
// -short (make test-short) skips it.
func requireMount(t *testing.T) {
	t.Helper()
	testsupport.SkipShort(t, "no mounts")
	testsupport.RequireRoot(t, "mounting the benchmarked file systems")
	testsupport.RequireMount(t)
}

// ourMounts returns the mount points under this process's bench directories.
func ourMounts(t *testing.T) []string {
	t.Helper()
	entries, err := readMountinfo()
	if err != nil {
		t.Fatal(err)
	}
	prefix := filepath.Join(os.TempDir(), fmt.Sprintf("%s%d-", baseDirPrefix, os.Getpid()))
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Point, prefix) {
			out = append(out, e.Point)
		}
	}
	return out
}

// cleanupOurMounts lazily unmounts whatever a failed test left behind.
func cleanupOurMounts(t *testing.T) {
	t.Cleanup(func() {
		for _, p := range ourMounts(t) {
			t.Errorf("left mounted: %s", p)
			unmountDir(p, 0)
		}
	})
}

func quickConfig(kinds ...string) CompareConfig {
	cfg := LocalSuite(nil)
	cfg.Quick()
	cfg.Systems = nil
	for _, k := range kinds {
		cfg.Systems = append(cfg.Systems, SystemSpec{Name: k, Kind: k})
	}
	return cfg
}

// TestCompareQuickTmpfs is the smoke run of the harness that `make test`
// does: the whole comparison, briefly, against tmpfs only. It checks that
// every cell was measured, the report has its tables, and nothing stays
// mounted. It times nothing.
func TestCompareQuickTmpfs(t *testing.T) {
	requireMount(t)
	cleanupOurMounts(t)
	rep, err := Compare(context.Background(), quickConfig(KindTmpfs))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range Workloads {
		for _, n := range rep.Config.Clients {
			c := rep.Cells[CellKey{"tmpfs", w, n}]
			if c == nil || c.Err != nil || !(c.MedianRate() > 0) {
				t.Errorf("tmpfs %s c=%d: cell %+v", w, n, c)
			}
		}
	}
	var buf bytes.Buffer
	rep.WriteMarkdown(&buf)
	for _, want := range []string{"### Throughput", "| spool | 8 |", "| tmpfs |"} {
		if !strings.Contains(unpadded(buf.String()), want) {
			t.Errorf("report lacks %q:\n%s", want, buf.String())
		}
	}
	if m := ourMounts(t); len(m) != 0 {
		t.Errorf("still mounted after Compare: %v", m)
	}
}

// TestCountRequestsMemfs mounts the memfs sample and counts its requests:
// each meta iteration sends exactly one CREATE and one UNLINK.
func TestCountRequestsMemfs(t *testing.T) {
	requireMount(t)
	cleanupOurMounts(t)
	cfg := quickConfig(KindMemfs)
	cfg.Workloads, cfg.Clients, cfg.CountClients, cfg.CountIters = []Workload{Meta}, []int{1}, []int{1}, 20
	rep, err := Compare(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.CountErr != nil {
		testsupport.Unavailable(t, "requests not countable here: %v", rep.CountErr)
	}
	if left, _ := filepath.Glob(filepath.Join(tracefsRoot, "instances", fmt.Sprintf("%s%d", tracerPrefix, os.Getpid()))); len(left) != 0 {
		t.Errorf("tracefs instance left behind: %v", left)
	}
	q := rep.Requests[CellKey{"memfs", Meta, 1}]
	if q == nil || q.Err != nil || q.Ops != 20 {
		t.Fatalf("requests: %+v", q)
	}
	for _, op := range []string{"CREATE", "UNLINK"} {
		if st := q.Counts.Ops[op]; st == nil || st.Count != 20 || st.Replied != 20 {
			t.Errorf("%s: %+v, want 20 sent and replied", op, st)
		}
	}
}

// syncBuffer is a progress writer that calls onLine for each line.
type syncBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	onLine func(string)
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if b.onLine != nil {
		b.onLine(string(p))
	}
	return len(p), nil
}

// TestCompareUnmountsOnCancel: a Ctrl-C (a cancelled context) during the
// timed runs stops them at once and unmounts every system.
func TestCompareUnmountsOnCancel(t *testing.T) {
	requireMount(t)
	cleanupOurMounts(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := quickConfig(KindTmpfs, KindMemfs)
	cfg.Duration, cfg.MaxOps = time.Hour, 0
	sawMounts := false
	cfg.Progress = &syncBuffer{onLine: func(line string) {
		if strings.HasPrefix(line, "mounted memfs") {
			sawMounts = len(ourMounts(t)) == 2
			go func() { time.Sleep(200 * time.Millisecond); cancel() }()
		}
	}}
	start := time.Now()
	rep, err := Compare(ctx, cfg)
	if err == nil || rep == nil || rep.Err == nil {
		t.Fatalf("cancelled compare: err %v", err)
	}
	if !sawMounts {
		t.Error("the two systems were not mounted while running")
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("took %s to stop", d)
	}
	if m := ourMounts(t); len(m) != 0 {
		t.Errorf("still mounted after cancel: %v", m)
	}
}

// TestSpoolfsSubprocessLifecycle drives the spoolfs system with a fake
// binary that mounts a tmpfs and unmounts it on SIGTERM, as spoolfs does:
// the arguments are passed, the mount is awaited, SIGTERM stops it.
func TestSpoolfsSubprocessLifecycle(t *testing.T) {
	requireMount(t)
	dir, tmp := t.TempDir(), t.TempDir()
	argsFile := filepath.Join(tmp, "args")
	// The trap comes before the mount: the harness may send SIGTERM as
	// soon as the mount shows.
	fake := writeScript(t, tmp, "fake-spoolfs", `echo "$@" > `+argsFile+`
trap 'umount "$4"; exit 0' TERM
mount -t tmpfs fake "$4" || exit 1
while :; do sleep 0.05; done`)
	s := newSpoolfs("spoolfs-x", fake, []string{"--writeback-cache=false"})
	s.fsPrefix = "tmpfs"
	t.Cleanup(func() { s.Unmount(); unmountDir(dir, 0) })
	if err := s.Mount(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	if pid := s.ServerPID(); pid <= 0 {
		t.Errorf("ServerPID = %d while mounted", pid)
	}
	got, _ := os.ReadFile(argsFile)
	if want := "mount --local bench " + dir + " --writeback-cache=false"; strings.TrimSpace(string(got)) != want {
		t.Errorf("args %q, want %q", got, want)
	}
	if err := s.Unmount(); err != nil {
		t.Fatalf("unmount: %v", err)
	}
	if _, mounted, _ := findMount(dir); mounted {
		t.Error("still mounted after Unmount")
	}
}

// TestSpoolfsMountFailureReported: a spoolfs that exits at once fails Mount
// with its output in the error, quickly.
func TestSpoolfsMountFailureReported(t *testing.T) {
	tmp := t.TempDir()
	fake := writeScript(t, tmp, "failing-spoolfs", `echo "spoolfs: mount point busy" >&2; exit 1`)
	s := newSpoolfs("spoolfs", fake, nil)
	start := time.Now()
	err := s.Mount(context.Background(), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "mount point busy") {
		t.Fatalf("err = %v, want the child's message", err)
	}
	if time.Since(start) > mountTimeout/2 {
		t.Error("did not notice the child exited")
	}
}

func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}
