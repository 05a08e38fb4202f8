package main

import (
	"encoding/json"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// TestBenchOutputs: `spoolfs bench DIR --json --plot FILE` prints JSON
// that parses, draws a PNG that decodes, and leaves DIR as it was; without
// --json it prints the table (no progress bar: stderr is not a terminal).
func TestBenchOutputs(t *testing.T) {
	dir := t.TempDir()
	plotFile := filepath.Join(t.TempDir(), "bench.png")
	code, stdout, stderr := spoolfs(t, nil, "bench", dir, "--workload", "spool", "--clients", "2",
		"--duration", "300ms", "--json", "--plot", plotFile)
	if code != 0 {
		t.Fatalf("bench: status %d, stderr %s", code, stderr)
	}
	var sum struct {
		Workload   string             `json:"workload"`
		Ops        uint64             `json:"ops"`
		OpsPerSec  float64            `json:"ops_per_second"`
		Latency    map[string]float64 `json:"latency_seconds"`
		Steps      map[string]any     `json:"steps_latency_seconds"`
		Throughput []map[string]float64
	}
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, stdout)
	}
	if sum.Workload != "spool" || sum.Ops == 0 || sum.OpsPerSec <= 0 || sum.Latency["p99"] <= 0 ||
		sum.Steps["fsync"] == nil || len(sum.Throughput) == 0 {
		t.Errorf("--json summary incomplete: %+v", sum)
	}
	f, err := os.Open(plotFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("--plot %s does not decode as a PNG: %v", plotFile, err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("bench left %d entries in %s (%s...)", len(left), dir, left[0].Name())
	}
	code, stdout, stderr = spoolfs(t, nil, "bench", dir, "--workload", "meta", "--count", "50", "--duration", "0")
	if code != 0 || !strings.Contains(stdout, "p99.9") || !strings.Contains(stdout, "50 ops") || stderr != "" {
		t.Errorf("bench table: status %d, stdout:\n%s\nstderr: %q", code, stdout, stderr)
	}
}

// TestBenchProgressOnATerminal: on a terminal (script(1) gives the run
// one) the progress bar is drawn on stderr; TestBenchOutputs checks that
// a pipe gets none.
func TestBenchProgressOnATerminal(t *testing.T) {
	scriptCmd := testsupport.RequireCmd(t, "script")
	dir := t.TempDir()
	line := testsupport.Binary(t) + " bench " + dir + " --workload meta --duration 1s"
	out, err := exec.Command(scriptCmd, "-qec", line, "/dev/null").CombinedOutput()
	if err != nil {
		t.Fatalf("script -qec %q: %v\n%s", line, err, out)
	}
	if !strings.Contains(string(out), "% |") || !strings.Contains(string(out), " ops, ") { // "1234 ops, 5678 ops/s  40% |███"
		t.Errorf("no progress bar on a terminal:\n%q", out)
	}
	if !strings.Contains(string(out), "p99.9") {
		t.Errorf("no summary table after the bar:\n%q", out)
	}
}
