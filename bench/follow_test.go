package bench

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// TestFollowLagQuick runs `spoolfs bench follow-lag` briefly with the real
// binary, as `make bench-follow` does: three replicas, a primary and a
// follower. It checks the report's table and target line, that every file
// was seen on the follower, and that nothing stays mounted or running. It
// times nothing.
func TestFollowLagQuick(t *testing.T) {
	requireMount(t)
	testsupport.SkipShort(t, "builds and runs spoolfs")
	cleanupOurMounts(t)
	bin := testsupport.Binary(t)
	cmd := exec.Command(bin, "bench", "follow-lag", "--rate", "200", "--duration", "1s", "--writers", "4")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench follow-lag: %v\n%s\n%s", err, out, stderr.String())
	}
	report := unpadded(string(out))
	for _, want := range []string{
		"### Follower lag: close() returned on the primary → stat succeeds on the follower",
		"| lag (visible on the follower) | 200 |",
		"| create+write+close on the primary | 200 |",
		"0 creations failed; 0 files not visible within",
		"Target of issue 11: lag p99 ≤ 10.00 ms on loopback:",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if pids, _ := exec.Command("pgrep", "-f", bin+" --log-level warn replica").Output(); len(pids) > 0 {
		t.Errorf("replica processes left running: %s", pids)
	}
	if pids, _ := exec.Command("pgrep", "-f", bin+" mount").Output(); len(pids) > 0 {
		t.Errorf("mount processes left running: %s", pids)
	}
}
