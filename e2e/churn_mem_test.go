package e2e

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// memWatch samples the memory of a cluster's processes (TestChurn): each
// replica's peak RSS (VmHWM), the primary's anonymous RSS, and the most
// content a replica reported storing (live data).
type memWatch struct {
	vol   string
	addrs []string
	prim  int // the primary's pid
	mu    sync.Mutex
	pids  []int   // replica pids; 0 while one is down
	peak  []int64 // most VmHWM seen per replica
	anon  int64   // most RssAnon of the primary
	liveB int64   // most content bytes a replica reported
	done  chan struct{}
	ended chan struct{}
	once  sync.Once
}

func newMemWatch(c *cluster, p *primary, vol string) *memWatch {
	m := &memWatch{vol: vol, prim: p.cmd.Process.Pid, done: make(chan struct{}), ended: make(chan struct{}),
		peak: make([]int64, len(c.reps))}
	for _, r := range c.reps {
		m.addrs = append(m.addrs, r.addr)
		m.pids = append(m.pids, r.cmd.Process.Pid)
	}
	return m
}

// setPid says replica i now runs as pid (0: down).
func (m *memWatch) setPid(i, pid int) {
	m.mu.Lock()
	m.pids[i] = pid
	m.mu.Unlock()
}

func (m *memWatch) run() {
	defer close(m.ended)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		m.sample()
		select {
		case <-tick.C:
		case <-m.done:
			return
		}
	}
}

func (m *memWatch) stop() {
	m.once.Do(func() { close(m.done) })
	<-m.ended
}

func (m *memWatch) sample() {
	for i := range m.addrs {
		m.sampleOne(i)
		if st := replicaStatus(m.addrs[i], m.vol); st != nil {
			m.mu.Lock()
			m.liveB = max(m.liveB, int64(st.DataBytes))
			m.mu.Unlock()
		}
	}
	if s := procStatus(m.prim); s != nil {
		m.mu.Lock()
		m.anon = max(m.anon, s["RssAnon"])
		m.mu.Unlock()
	}
}

// sampleOne reads replica i's peak RSS.
func (m *memWatch) sampleOne(i int) {
	m.mu.Lock()
	pid := m.pids[i]
	m.mu.Unlock()
	if pid == 0 {
		return
	}
	if s := procStatus(pid); s != nil {
		m.mu.Lock()
		m.peak[i] = max(m.peak[i], s["VmHWM"])
		m.mu.Unlock()
	}
}

func (m *memWatch) live() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.liveB
}

func (m *memWatch) bound() int64 { return 2*m.live() + churnMemSlack }

func (m *memWatch) report(t *testing.T) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	for i, p := range m.peak {
		fmt.Fprintf(&b, "replica %d peak RSS %d MiB; ", i+1, p>>20)
	}
	t.Logf("%sprimary anonymous RSS %d MiB; live data %d MiB; bound %d MiB", b.String(), m.anon>>20, m.liveB>>20, (2*m.liveB+churnMemSlack)>>20)
}

func (m *memWatch) check(t *testing.T) {
	bound := m.bound()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, p := range m.peak {
		if p == 0 || p > bound {
			t.Errorf("replica %d: peak RSS %d MiB (0: never read), bound %d MiB", i+1, p>>20, bound>>20)
		}
	}
	if m.anon == 0 || m.anon > bound {
		t.Errorf("primary: anonymous RSS %d MiB (0: never read), bound %d MiB", m.anon>>20, bound>>20)
	}
}

// procStatus reads the kB fields of /proc/PID/status, in bytes (nil if
// the process is gone).
func procStatus(pid int) map[string]int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		v, isKB := strings.CutSuffix(strings.TrimSpace(v), " kB")
		if !ok || !isKB {
			continue
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			out[k] = n << 10
		}
	}
	return out
}
