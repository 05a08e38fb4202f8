package node

import (
	"context"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/spoolfs/spoolfs/replication"
)

// TestIdleFencedPrimaryNoticed: a primary that writes nothing learns
// within 2 s that another node took its volume with a newer term — the
// replicas end its streams with FENCED — and then /readyz answers 503,
// status says "fenced" (and `spoolfs status` exits 3) and the metric is 1.
// On the old code it looked healthy until its next write.
func TestIdleFencedPrimaryNoticed(t *testing.T) {
	requireFUSE(t)
	bin := spoolfsBin(t)
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	dir := newMountDir(t) // its cleanup runs after the node's Stop
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := startPrimaryNode(ctx, t, "n1", dir, 0, log)
	addrs := p.addrs
	a, err := p.n.StartAdmin("127.0.0.1:0") // it reads the node's volumes as it is asked
	if err != nil {
		t.Fatal(err)
	}
	admin := a.Addr()
	if err := writeFileRaw(dir+"/msg", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, admin, "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz before the takeover: %d %s", code, body)
	}

	// Another node takes the volume; the first one stays idle.
	p2, _, err := replication.OpenPrimary(ctx, replication.PrimaryConfig{Volume: "spool", NodeID: "n2", Replicas: addrs, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	taken := time.Now()
	for {
		code, _ := get(t, admin, "/readyz")
		if code == http.StatusServiceUnavailable {
			break
		}
		if time.Since(taken) > 2*time.Second {
			t.Fatalf("/readyz still %d 2 s after another node took the volume", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("fencing noticed after %v", time.Since(taken).Round(time.Millisecond))
	if _, body := get(t, admin, "/readyz"); !strings.Contains(body, "fenced") {
		t.Errorf("/readyz does not say why: %s", body)
	}
	if ns := fetchStatus(t, admin); ns.Volumes[0].Role != "fenced" {
		t.Errorf("status: role %q, want fenced", ns.Volumes[0].Role)
	}
	if _, body := get(t, admin, "/metrics"); !strings.Contains(body, `spoolfs_primary_fenced{volume="spool"} 1`) {
		t.Error("/metrics does not say the volume is fenced")
	}
	out, err := exec.Command(bin, "status", "--admin", admin).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 || !strings.Contains(string(out), "fenced") {
		t.Errorf("spoolfs status of a fenced primary: %v, want exit status 3\n%s", err, out)
	}
}
