package bench

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/procfs"
)

func TestHistPercentiles(t *testing.T) {
	var h Hist
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.9, 900 * time.Microsecond}, {0.99, 990 * time.Microsecond}} {
		got := h.Percentile(tc.p)
		if rel := math.Abs(float64(got-tc.want)) / float64(tc.want); rel > 0.04 {
			t.Errorf("p%v = %v, want %v within 4%%", tc.p*100, got, tc.want)
		}
	}
	if h.Percentile(1) != time.Millisecond || h.Max() != time.Millisecond {
		t.Errorf("p100 = %v, max = %v, want 1ms", h.Percentile(1), h.Max())
	}
	var other Hist
	other.Record(time.Second)
	h.Merge(&other)
	if h.Count() != 1001 || h.Max() != time.Second {
		t.Errorf("after merge: count %d max %v", h.Count(), h.Max())
	}
}

func TestHistBucketsCoverEveryValue(t *testing.T) {
	for _, v := range []uint64{0, 1, 31, 32, 33, 1000, 1 << 40, math.MaxInt64} {
		i := bucketOf(v)
		if i < 0 || i >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d, out of range", v, i)
		}
		if mid := bucketValue(i); v > 64 && math.Abs(float64(mid)-float64(v))/float64(v) > 1.0/32 {
			t.Errorf("bucket of %d represents %d: more than 1/32 off", v, mid)
		}
	}
}

func TestMedian(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, nan, 2, 3}, 2.5}, {[]float64{5}, 5}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if !math.IsNaN(median([]float64{nan})) {
		t.Error("median of no values is not NaN")
	}
}

func TestParseTrace(t *testing.T) {
	const trace = `# tracer: nop
#
           <...>-41 [001] ..... 105.000010: fuse_request_send: connection 39 req 8 opcode 1 (FUSE_LOOKUP) len 49
           <...>-41 [000] ..... 105.000052: fuse_request_end: connection 39 req 8 len 144 error -2
           <...>-41 [001] ..... 105.000100: fuse_request_send: connection 39 req 10 opcode 35 (FUSE_CREATE) len 72
           <...>-41 [001] ..... 105.000110: fuse_request_send: connection 39 req 12 opcode 1 (FUSE_LOOKUP) len 49
           <...>-41 [000] ..... 105.000130: fuse_request_end: connection 39 req 12 len 144 error 0
           <...>-41 [000] ..... 105.000140: fuse_request_end: connection 39 req 10 len 160 error 0
           <...>-41 [000] ..... 105.000150: fuse_request_send: connection 39 req 14 opcode 99 (99) len 40
`
	c, err := parseTrace(strings.NewReader(trace))
	if err != nil {
		t.Fatal(err)
	}
	if c.Total() != 4 {
		t.Errorf("total %d, want 4", c.Total())
	}
	lk := c.Ops["LOOKUP"]
	if lk == nil || lk.Count != 2 || lk.Replied != 2 || lk.Wait != 62*time.Microsecond {
		t.Errorf("LOOKUP = %+v, want 2 sent, 2 replied, 62µs", lk)
	}
	if cr := c.Ops["CREATE"]; cr == nil || cr.Wait != 40*time.Microsecond {
		t.Errorf("CREATE = %+v, want 40µs", cr)
	}
	if c.Ops["OPCODE_99"] == nil {
		t.Errorf("unknown opcode not kept: %v", c.Names())
	}
	if names := c.Names(); names[0] != "LOOKUP" {
		t.Errorf("names %v: most frequent is not first", names)
	}
}

func TestProcCPU(t *testing.T) {
	// comm with spaces and a parenthesis; utime 250 and stime 50 ticks;
	// the 52 fields of a Linux 5+ stat line, read by procfs.
	stat := "1234 (a b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 1000 10 " +
		"18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
	proc := t.TempDir()
	if err := os.MkdirAll(filepath.Join(proc, "1234"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proc, "1234", "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
	fs, err := procfs.NewFS(proc)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := procCPU(fs, 1234); err != nil || got != 3*time.Second {
		t.Errorf("got %v, %v; want 3s", got, err)
	}
	if err := os.WriteFile(filepath.Join(proc, "1234", "stat"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := procCPU(fs, 1234); err == nil {
		t.Error("garbage parsed")
	}
	if self, err := processCPU(os.Getpid()); err != nil || self < 0 {
		t.Errorf("own cpu: %v, %v", self, err)
	}
}

func TestStaleBase(t *testing.T) {
	tmp := "/tmp/"
	if _, ok := staleBase(tmp, "/tmp/spoolfs-bench-"+strconv.Itoa(os.Getpid())+"-123/memfs"); ok {
		t.Error("the mount of a live process is called stale")
	}
	base, ok := staleBase(tmp, "/tmp/spoolfs-bench-2147483646-77/tmpfs")
	if !ok || base != "/tmp/spoolfs-bench-2147483646-77" {
		t.Errorf("dead pid: got %q %v", base, ok)
	}
	if _, ok := staleBase(tmp, "/tmp/other/x"); ok {
		t.Error("foreign mount called stale")
	}
}

func TestParseVariant(t *testing.T) {
	s, err := ParseVariant("spoolfs-nowb:--writeback-cache=false --readdirplus=on")
	if err != nil || s.Name != "spoolfs-nowb" || s.Kind != KindSpoolfs || len(s.Args) != 2 {
		t.Errorf("got %+v, %v", s, err)
	}
	env, flags := splitEnv([]string{"GOMAXPROCS=1", "GODEBUG=x=1", "--a=B=c"})
	if len(env) != 2 || len(flags) != 1 || flags[0] != "--a=B=c" {
		t.Errorf("splitEnv: env %v flags %v", env, flags)
	}
	sys, _ := NewSystem(SystemSpec{Name: "v", Kind: KindSpoolfs, Args: []string{"GOMAXPROCS=1", "--x"}}, "/bin/true")
	other := newSpoolfs("o", "/bin/spoolfs", []string{"GOMAXPROCS=1", "@/tmp/other", "--x"})
	if other.bin != "/tmp/other" || strings.Join(other.argv("/d"), " ") != "mount --local bench /d --x" ||
		!strings.HasPrefix(other.Describe(), "GOMAXPROCS=1 /tmp/other mount") {
		t.Errorf("@binary variant: bin %q argv %v describe %q", other.bin, other.argv("/d"), other.Describe())
	}
	for i := 0; i < 2; i++ { // Describe must not change the arguments
		if d := sys.Describe(); !strings.HasPrefix(d, "GOMAXPROCS=1 spoolfs mount --local VOLUME DIR --x") {
			t.Errorf("Describe = %q", d)
		}
	}
	for _, bad := range []string{"noargs", ":--x", "a b:--x"} {
		if _, err := ParseVariant(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseMemfsVariant(t *testing.T) {
	s, err := ParseMemfsVariant("memfs-x:writeback,no-default-permissions")
	if err != nil || s.Kind != KindMemfs || len(s.Args) != 2 {
		t.Errorf("got %+v, %v", s, err)
	}
	sys, err := NewSystem(s, "")
	if m, ok := sys.(*memfsSystem); err != nil || !ok || !m.writeback || !m.noDefaultPerms {
		t.Errorf("system %+v, %v", sys, err)
	}
	p, err := ParseMemfsVariant("memfs-p:process,writeback")
	if err != nil {
		t.Fatal(err)
	}
	sys, err = NewSystem(p, "/bin/spoolfs")
	if c, ok := sys.(*childSystem); err != nil || !ok || c.Kind() != KindMemfs ||
		strings.Join(c.argv("/d"), " ") != "bench serve-memfs --knobs=writeback /d" {
		t.Errorf("process variant: %+v, %v", sys, err)
	}
	if _, err := ParseMemfsVariant("memfs-x:turbo"); err == nil {
		t.Error("unknown knob accepted")
	}
}

func TestRunOptionsValidated(t *testing.T) {
	dir := t.TempDir()
	for _, o := range []Options{
		{Workload: Meta, Clients: 0, Count: 1},
		{Workload: Meta, Clients: 1},
		{Workload: "nope", Clients: 1, Count: 1},
	} {
		if _, err := Run(context.Background(), dir, o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// TestRunCountBound runs every workload on the test's own directory (no
// mount needed): the count bound holds, and nothing is left behind.
func TestRunCountBound(t *testing.T) {
	dir := t.TempDir()
	for _, w := range Workloads {
		var before, after bool
		res, err := Run(context.Background(), dir, Options{Workload: w, Clients: 3, Count: 25,
			BeforeTimed: func() error { before = true; return nil },
			AfterTimed:  func() error { after = true; return nil }})
		if err != nil {
			t.Fatalf("%s: %v", w, err)
		}
		if res.Ops != 75 || res.Lat.Count() != 75 || !before || !after {
			t.Errorf("%s: %d ops, %d latencies, hooks %v %v; want 75, 75, true true", w, res.Ops, res.Lat.Count(), before, after)
		}
		left, _ := filepath.Glob(filepath.Join(dir, "c*", "*"))
		if len(left) != 0 {
			t.Errorf("%s left files: %v", w, left)
		}
	}
}

// TestRunMaxFiles: a write4k run keeps at most MaxFiles files, spread over
// its clients; other workloads ignore the bound.
func TestRunMaxFiles(t *testing.T) {
	dir := t.TempDir()
	res, err := Run(context.Background(), dir, Options{Workload: Write4K, Clients: 4, Duration: time.Minute, MaxFiles: 10})
	if err != nil || res.Ops != 12 {
		t.Errorf("write4k: %v, %d ops; want 4 clients x 3", err, res.Ops)
	}
	res, err = Run(context.Background(), dir, Options{Workload: Meta, Clients: 1, Count: 20, MaxFiles: 10})
	if err != nil || res.Ops != 20 {
		t.Errorf("meta: %v, %d ops; want 20", err, res.Ops)
	}
}

// TestRunStopsOnError: a client that cannot create its files fails the run
// with the path and the syscall in the error, instead of counting errors.
func TestRunStopsOnError(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "c0"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Run(context.Background(), dir, Options{Workload: Meta, Clients: 1, Duration: time.Second})
	if err == nil {
		t.Fatal("run in a directory that is a file succeeded")
	}
}

// TestRunDurationBoundAndCancel: a run bounded only by time ends near its
// duration, and a cancelled context ends it early.
func TestRunDurationBoundAndCancel(t *testing.T) {
	dir := t.TempDir()
	res, err := Run(context.Background(), dir, Options{Workload: Meta, Clients: 2, Duration: 50 * time.Millisecond})
	if err != nil || res.Elapsed < 50*time.Millisecond || res.Elapsed > 5*time.Second || res.Ops == 0 {
		t.Errorf("duration run: %v, %s", err, res.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if _, err := Run(ctx, dir, Options{Workload: Meta, Clients: 2, Duration: time.Hour}); err == nil {
		t.Error("cancelled run returned no error")
	}
	if time.Since(start) > 10*time.Second {
		t.Error("cancelled run did not stop")
	}
}

// TestRatioPairsRounds: ratios pair the runs of each round, so a round
// where the whole machine was slow does not skew them.
func TestRatioPairsRounds(t *testing.T) {
	mk := func(rates ...float64) *Cell {
		c := &Cell{}
		for _, r := range rates {
			if math.IsNaN(r) {
				c.Runs = append(c.Runs, nil)
				continue
			}
			c.Runs = append(c.Runs, &Result{Ops: uint64(r), Elapsed: time.Second})
		}
		return c
	}
	nan := math.NaN()
	rep := &Report{
		Config: CompareConfig{Workloads: []Workload{Meta}, Clients: []int{1}},
		Systems: []SystemInfo{
			{Name: "memfs", Kind: KindMemfs, FUSE: true},
			{Name: "memfs-proc", Kind: KindMemfs, FUSE: true, Variant: true, ProcessOnly: true},
			{Name: "memfs-nodp", Kind: KindMemfs, FUSE: true, Variant: true},
			{Name: "spoolfs", Kind: KindSpoolfs, FUSE: true},
		},
		Cells: map[CellKey]*Cell{
			{"memfs", Meta, 1}:      mk(100, 10, 100, 100),
			{"memfs-proc", Meta, 1}: mk(200, 20, 200, 200),
			{"spoolfs", Meta, 1}:    mk(300, 30, nan, 100),
		},
	}
	med, lo, hi := rep.Ratio("spoolfs", "memfs", Meta, 1)
	if med != 3 || lo != 1 || hi != 3 {
		t.Errorf("ratio %v [%v, %v], want 3 [1, 3]", med, lo, hi)
	}
	if got := rep.memfsAnchors(); strings.Join(got, ",") != "memfs,memfs-proc" {
		t.Errorf("memfs anchors %v", got)
	}
	var buf strings.Builder
	rep.WriteMarkdown(&buf)
	for _, want := range []string{"| meta | 1 | ≥ 2.0× | 3.00× met | 1.50× not met |", "spoolfs / memfs-proc"} {
		if !strings.Contains(unpadded(buf.String()), want) {
			t.Errorf("report lacks %q:\n%s", want, buf.String())
		}
	}
}

// unpadded is a Markdown report with each run of spaces made one, so that
// a test finds a row ("| meta | 1 | ...") whatever width tablewriter
// padded its columns to.
func unpadded(s string) string { return manySpaces.ReplaceAllString(s, " ") }

var manySpaces = regexp.MustCompile(` {2,}`)
