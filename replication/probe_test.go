package replication

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// TestAnsweringSeesSilentReplicas: on an idle volume (no writes, so no
// acks) two of three replicas are cut off with their connections left open
// and silent, as a SIGSTOP or a partition leaves them; the links stay
// "connected" until the keepalive (15 s), yet Answering drops below W
// within a few probe intervals, and is back at 3 soon after the partition
// heals.
func TestAnsweringSeesSilentReplicas(t *testing.T) {
	c := makeCluster(t, 3)
	cfg, ps := proxied(t, c)
	cfg.ProbeInterval = 200 * time.Millisecond
	p, _ := c.openPrimary(cfg)
	within := time.Second
	testsupport.WaitFor(t, 5*time.Second, "3 replicas answering", func() bool { return p.Answering(within) == 3 })

	ps[0].Blackhole()
	ps[1].Blackhole()
	cut := time.Now()
	testsupport.WaitFor(t, 5*time.Second, "1 replica answering", func() bool { return p.Answering(within) == 1 })
	t.Logf("answering fell to 1 after %v", time.Since(cut))
	st := p.Status()
	if !st.Replicas[0].Connected {
		t.Log("the silent link was already down (the test is meant to see it still connected)")
	}
	if age := time.Since(st.Replicas[2].LastAnswer); age > within {
		t.Errorf("the reachable replica's last answer is %v old", age)
	}

	ps[0].Heal()
	ps[1].Heal()
	healed := time.Now()
	testsupport.WaitFor(t, 5*time.Second, "3 replicas answering again", func() bool { return p.Answering(within) == 3 })
	t.Logf("answering back at 3 after %v", time.Since(healed))
}

// TestReplicaUnready: a replica is ready while its data directory takes
// files; not once the directory is gone (a lost disk, an unmounted
// volume), nor after Close.
func TestReplicaUnready(t *testing.T) {
	dir := t.TempDir() + "/data"
	s, err := NewReplicaServer(dir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Unready(); err != nil {
		t.Fatalf("fresh replica: %v", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Unready(); err == nil || !strings.Contains(err.Error(), "not writable") {
		t.Errorf("data dir gone: %v, want not writable", err)
	}
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := s.Unready(); err != nil {
		t.Errorf("data dir back: %v", err)
	}
	s.Close()
	if err := s.Unready(); err == nil {
		t.Error("closed replica is ready")
	}
}
