package admin

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// fakeSource reports fixed answers.
type fakeSource struct {
	unhealthy, unready []string
	sawDeadline        bool
}

func (f *fakeSource) Status(context.Context) NodeStatus {
	return NodeStatus{NodeID: "mx1", Volumes: []VolumeStatus{{Volume: "spool", Role: "primary", Term: 3}}}
}

func (f *fakeSource) Unhealthy(ctx context.Context) []string {
	_, f.sawDeadline = ctx.Deadline()
	return f.unhealthy
}

func (f *fakeSource) Unready() []string { return f.unready }

// get fetches path from the endpoint at addr.
func get(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestEndpoint: each path answers what the Source says — 200 "ok" or 503
// with one line per problem; /healthz gives the Source a deadline;
// /status is its status as JSON; /metrics has the collector's metrics.
func TestEndpoint(t *testing.T) {
	src := &fakeSource{unready: []string{"volume spool: fenced", "replica 10.0.0.7:7400: not serving"}}
	col := prometheus.NewGauge(prometheus.GaugeOpts{Name: "spoolfs_test_gauge", Help: "A test gauge."})
	col.Set(7)
	a, err := Start("127.0.0.1:0", src, col, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()

	if code, body := get(t, a.Addr(), "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q, want 200 ok", code, body)
	}
	if !src.sawDeadline {
		t.Error("/healthz asked the source without a deadline")
	}
	code, body := get(t, a.Addr(), "/readyz")
	if code != http.StatusServiceUnavailable || body != strings.Join(src.unready, "\n")+"\n" {
		t.Errorf("/readyz: %d %q, want 503 and one line per problem", code, body)
	}
	code, body = get(t, a.Addr(), "/status")
	var ns NodeStatus
	if err := json.Unmarshal([]byte(body), &ns); code != http.StatusOK || err != nil || ns.NodeID != "mx1" || len(ns.Volumes) != 1 || ns.Volumes[0].Term != 3 {
		t.Errorf("/status: %d %v %q", code, err, body)
	}
	if code, body := get(t, a.Addr(), "/metrics"); code != http.StatusOK || !strings.Contains(body, "spoolfs_test_gauge 7") {
		t.Errorf("/metrics: %d, no spoolfs_test_gauge 7 in\n%s", code, body)
	}
}
