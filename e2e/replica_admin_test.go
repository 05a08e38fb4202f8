package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// TestReplicaAdmin: `spoolfs replica --admin ADDR` serves /metrics with
// the volumes it stores (commits counted once a close was acknowledged),
// /healthz and /readyz, and still stops cleanly on SIGTERM.
func TestReplicaAdmin(t *testing.T) {
	requireCluster(t)
	admins := make([]string, 3)
	c := newClusterWith(t, 3, func(i int) []string {
		admins[i] = testsupport.FreeAddr(t)
		return []string{"--admin", admins[i]}
	})
	const vol = "adm"
	p := c.startPrimary(vol, "p1")
	if err := os.WriteFile(p.path("m"), []byte("message"), 0o644); err != nil {
		t.Fatalf("write: %v", err)
	}
	get := func(addr, path string) (int, string) {
		t.Helper()
		cl := &http.Client{Timeout: 10 * time.Second}
		resp, err := cl.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s%s: %v", addr, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	committed := 0
	for i, a := range admins {
		for _, path := range []string{"/healthz", "/readyz"} {
			if code, body := get(a, path); code != http.StatusOK {
				t.Errorf("replica %d %s: %d %q", i+1, path, code, body)
			}
		}
		_, body := get(a, "/metrics")
		want := fmt.Sprintf(`spoolfs_replica_commits_total{replica=%q,volume=%q} `, c.reps[i].addr, vol)
		for _, line := range strings.Split(body, "\n") {
			if rest, ok := strings.CutPrefix(line, want); ok && rest != "0" {
				committed++
			}
		}
		if !strings.Contains(body, "spoolfs_replica_lsn{") || !strings.Contains(body, "go_goroutines") {
			t.Errorf("replica %d /metrics lacks the store's gauges or the Go collector:\n%s", i+1, lastLines(body, 20))
		}
	}
	// W=2: at least two replicas committed the acknowledged close.
	if committed < 2 {
		t.Errorf("%d replicas report commits of volume %s, want at least 2", committed, vol)
	}
	p.stop(t)
	if err := c.reps[0].terminate(10 * time.Second); err != nil {
		t.Errorf("replica 1 after SIGTERM: %v\n%s", err, lastLines(c.reps[0].log.String(), 15))
	}
}
