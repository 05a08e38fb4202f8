package bench

import (
	"context"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

func TestReplicatedSuite(t *testing.T) {
	cfg := ReplicatedSuite()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Systems) != 2 || cfg.Systems[0].Kind != KindDisk || cfg.Systems[1].Kind != KindReplicated {
		t.Errorf("systems: %+v", cfg.Systems)
	}
	if len(cfg.Workloads) != 1 || cfg.Workloads[0] != Spool || len(cfg.Clients) != 3 || cfg.Clients[2] != 32 {
		t.Errorf("workloads %v, clients %v", cfg.Workloads, cfg.Clients)
	}
	for _, spec := range cfg.Systems {
		if _, err := NewSystem(spec, "/bin/true"); err != nil {
			t.Errorf("NewSystem(%+v): %v", spec, err)
		}
	}
}

// TestStepsRecorded: the spool workload records each fsync, close and
// rename (on any directory: no mount needed).
func TestStepsRecorded(t *testing.T) {
	res, err := Run(context.Background(), t.TempDir(), Options{Workload: Spool, Clients: 2, Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 6 || res.Steps.Fsync.Count() != 12 || res.Steps.Close.Count() != 12 || res.Steps.Rename.Count() != 6 {
		t.Errorf("ops %d, fsync %d, close %d, rename %d; want 6, 12, 12, 6", res.Ops,
			res.Steps.Fsync.Count(), res.Steps.Close.Count(), res.Steps.Rename.Count())
	}
}

// TestCompareQuickReplicated runs the replicated suite briefly with the
// real spoolfs binary, as `make bench-replicated` does: three replica
// processes and a replicated mount next to a directory of the disk. It
// checks that both systems were measured, the report has the issue 3
// section, and nothing stays mounted or running. It times nothing.
func TestCompareQuickReplicated(t *testing.T) {
	requireMount(t)
	testsupport.SkipShort(t, "builds and runs spoolfs")
	cleanupOurMounts(t)
	bin := testsupport.Binary(t)
	cmd := exec.Command(bin, "bench", "compare", "--suite", "replicated", "--quick", "--clients", "1,4")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench compare: %v\n%s\n%s", err, out, stderr.String())
	}
	report := string(out)
	for _, want := range []string{
		"### Replicated spoolfs against the local disk with fsync (issue 3)",
		"| spool | 1 | ≥ 0.2× |",
		"### fsync, close and rename in the median run (p50 / p99)",
		"Target of issue 3: spoolfs-r3 fsync p99 at 1 writer",
	} {
		if !strings.Contains(unpadded(report), want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "failed") || strings.Contains(report, "NOT MEASURED") {
		t.Errorf("a system was not measured:\n%s\n%s", report, stderr.String())
	}
	// Commits per message: at least the 2 fsync waits and the rename on
	// each of the two quorum replicas, unless waits shared commits.
	if m := regexp.MustCompile(`(?m)^\| spool \| 1 \| — \| ([0-9.]+) \|$`).FindStringSubmatch(unpadded(report)); m == nil {
		t.Errorf("report lacks replica commits per message at 1 writer:\n%s", report)
	} else if v, _ := strconv.ParseFloat(m[1], 64); v < 2 {
		t.Errorf("%.2f replica commits per message at 1 writer, want at least 2", v)
	}
	if pids, _ := exec.Command("pgrep", "-f", bin+" --log-level warn replica").Output(); len(pids) > 0 {
		t.Errorf("replica processes left running: %s", pids)
	}
}

// TestReplicatedVariant: a replicated variant's words are parsed like a
// local one's: environment first, then another binary, then mount flags;
// the replicas run that binary with that environment too.
func TestReplicatedVariant(t *testing.T) {
	s := newReplicated("new", "/usr/bin/spoolfs", []string{"GOMAXPROCS=1", "@/tmp/spoolfs-new", "--writeback-cache=true"})
	if s.bin != "/tmp/spoolfs-new" || s.childSystem.bin != "/tmp/spoolfs-new" {
		t.Errorf("binary %q / %q, want /tmp/spoolfs-new for the mount and the replicas", s.bin, s.childSystem.bin)
	}
	if len(s.env) != 1 || s.env[0] != "GOMAXPROCS=1" {
		t.Errorf("environment %q", s.env)
	}
	if len(s.flags) != 1 || s.flags[0] != "--writeback-cache=true" {
		t.Errorf("mount flags %q", s.flags)
	}
	if d := s.Describe(); !strings.Contains(d, "GOMAXPROCS=1 /tmp/spoolfs-new mount --replicas") || !strings.Contains(d, "/tmp/spoolfs-new replica") {
		t.Errorf("description %q", d)
	}
}
