package replication

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/faultproxy"
)

// proxied puts a faultproxy in front of every replica of c and returns a
// primary config that dials the proxies.
func proxied(t *testing.T, c *testCluster) (PrimaryConfig, []*faultproxy.Proxy) {
	t.Helper()
	cfg := c.primaryConfig(vol)
	cfg.Replicas = nil
	var ps []*faultproxy.Proxy
	for _, addr := range c.addrs() {
		p, err := faultproxy.New(addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		ps = append(ps, p)
		cfg.Replicas = append(cfg.Replicas, p.Addr())
	}
	return cfg, ps
}

// TestPartitionHeals: two replicas cut off with their connections left
// open and silent (a partition, or stopped processes). Append, Status and
// Durable never block; a Wait fails at its deadline and the next ones at
// once; the primary's keepalive ends the dead connections (long form);
// once the partition heals the links resume, the records kept in memory
// become durable and Waits wait again.
func TestPartitionHeals(t *testing.T) {
	partition := 20 * time.Second // past the keepalive (10 s + 5 s)
	if testing.Short() {
		partition = 3 * time.Second // TCP resumes the held connections
	}
	c := makeCluster(t, 3)
	cfg, ps := proxied(t, c)
	p, m := c.openPrimary(cfg)
	_, lsn := m.writeFile(RootIno, "before", []byte("durable"))
	mustWait(t, p, lsn, 10*time.Second)

	ps[0].Blackhole()
	ps[1].Blackhole()
	cut := time.Now()
	_, lsn = m.writeFile(RootIno, "during", make([]byte, 1<<20))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	err := p.Wait(ctx, lsn)
	cancel()
	if !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("wait with two replicas cut off: %v", err)
	}
	for i := 0; time.Since(cut) < partition; i++ {
		start := time.Now()
		_, last := m.writeFile(RootIno, fmt.Sprintf("kept-%d", i), make([]byte, 64<<10))
		st := p.Status()
		if err := p.Wait(context.Background(), last); !errors.Is(err, ErrNoQuorum) {
			t.Fatalf("wait while the quorum is lost: %v, want ErrNoQuorum at once", err)
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("append, status and a failing wait took %v while cut off", took)
		}
		if !st.QuorumLost {
			t.Fatal("status does not say the quorum is lost")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !testing.Short() {
		st := p.Status()
		if st.Replicas[0].Connected || st.Replicas[1].Connected {
			t.Errorf("links still connected after %v of silence: %+v", partition, st.Replicas)
		}
	}

	ps[0].Heal()
	ps[1].Heal()
	head := p.Status().Head
	waitDurable(t, p, head, 30*time.Second)
	_, lsn = m.writeFile(RootIno, "after", []byte("durable again"))
	mustWait(t, p, lsn, 10*time.Second)
	c.waitForLSN(vol, lsn)
	for i := range c.reps {
		sameState(t, c, i, m)
	}
}
