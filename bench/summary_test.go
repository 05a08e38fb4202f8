package bench

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunLeavesNothing: a run in a directory leaves it as it found it: no
// files and no client directories it made (c0/, c1/); a client directory
// that was already there stays.
func TestRunLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "c1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), dir, Options{Workload: Write4K, Clients: 3, Count: 10}); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(left) != 1 || filepath.Base(left[0]) != "c1" {
		t.Errorf("left %v; want only the c1 that was there before", left)
	}
	if in, _ := filepath.Glob(filepath.Join(dir, "c1", "*")); len(in) != 0 {
		t.Errorf("left files in c1: %v", in)
	}
}

// TestPlotAndSummary: a run's timeline, progress calls, summary table and
// plot; the PNG decodes as a PNG.
func TestPlotAndSummary(t *testing.T) {
	dir := t.TempDir()
	var calls int // Progress runs on the sampler goroutine alone
	res, err := Run(context.Background(), dir, Options{Workload: Spool, Clients: 2, Duration: 350 * time.Millisecond,
		Progress: func(uint64, time.Duration) { calls++ }})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Timeline) == 0 || calls != len(res.Timeline) || res.Timeline[len(res.Timeline)-1].Ops != res.Ops {
		t.Errorf("timeline %v, %d progress calls, %d ops: want a sample per call ending at the ops", res.Timeline, calls, res.Ops)
	}
	var table bytes.Buffer
	if err := Summarize(dir, &res).WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ops/s", "p99.9", "iteration", "fsync", "close", "rename"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	out := filepath.Join(t.TempDir(), "bench.png")
	if err := WritePlot(out, &res); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s does not decode as a PNG: %v", out, err)
	}
	if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 200 {
		t.Errorf("plot is %dx%d pixels", b.Dx(), b.Dy())
	}
}

func TestThroughput(t *testing.T) {
	ms := time.Millisecond
	at, ops := Throughput([]Sample{{100 * ms, 10}, {200 * ms, 30}, {201 * ms, 31}})
	if len(at) != 2 || ops[0] != 100 || ops[1] != 200 {
		t.Errorf("Throughput = %v %v; want 100 and 200 ops/s, the 1 ms tail dropped", at, ops)
	}
}
