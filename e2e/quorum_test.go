package e2e

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestQuorumLost: with two of three replicas down, close() of a dirty file
// fails with EIO within the flush timeout; the data stays in the primary.
// When the replicas come back the data reaches them, a later close()
// succeeds, and a new primary recovers the file that got EIO.
func TestQuorumLost(t *testing.T) {
	requireCluster(t)
	c := newCluster(t, 3)
	const vol = "quorum"
	const flushTimeout = 2 * time.Second
	p := c.startPrimary(vol, "p1", "--flush-timeout", flushTimeout.String())
	if err := os.WriteFile(p.path("before"), []byte("before"), 0o644); err != nil {
		t.Fatalf("write with all replicas up: %v", err)
	}

	c.kill(0)
	c.kill(1)
	late := bytes.Repeat([]byte("written while two replicas were down\n"), 500)
	start := time.Now()
	err := os.WriteFile(p.path("late"), late, 0o644)
	took := time.Since(start)
	if !errors.Is(err, unix.EIO) {
		t.Fatalf("close with two replicas down: %v, want EIO", errName(err))
	}
	t.Logf("close with two replicas down: EIO after %v (flush timeout %v)", took.Round(time.Millisecond), flushTimeout)
	if took < flushTimeout-100*time.Millisecond || took > flushTimeout+2*time.Second {
		t.Errorf("close took %v: want EIO at the flush timeout of %v", took, flushTimeout)
	}
	if got, err := os.ReadFile(p.path("late")); err != nil || !bytes.Equal(got, late) {
		t.Errorf("the primary lost the data of the close that got EIO: %v, %d bytes", err, len(got))
	}

	c.start(0)
	c.start(1)
	lsn := waitConverged(t, c, vol)
	if lsn == 0 {
		t.FailNow() // the returned replicas did not catch up
	}
	t.Logf("replicas caught up at lsn %d", lsn)
	start = time.Now()
	if err := os.WriteFile(p.path("after"), []byte("after"), 0o644); err != nil {
		t.Fatalf("close after the replicas returned: %v", err)
	}
	t.Logf("close after the replicas returned: ok in %v", time.Since(start).Round(time.Microsecond))
	p.stop(t)

	// A new primary recovers the file whose close got EIO: its data did
	// arrive once the replicas were back.
	p2 := c.startPrimary(vol, "p2")
	for name, want := range map[string][]byte{"before": []byte("before"), "late": late, "after": []byte("after")} {
		if got, err := os.ReadFile(p2.path(name)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("recovered %s: %v, %d bytes, want %d", name, err, len(got), len(want))
		}
	}
	p2.stop(t)
}
