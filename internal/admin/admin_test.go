package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// fakeSource reports fixed answers.
type fakeSource struct {
	unhealthy   []string
	ready       Readiness
	sawDeadline bool
}

func (f *fakeSource) Status(context.Context) NodeStatus {
	return NodeStatus{NodeID: "mx1", Volumes: []VolumeStatus{{Volume: "spool", Role: "primary", Term: 3}}}
}

func (f *fakeSource) Unhealthy(ctx context.Context) []string {
	_, f.sawDeadline = ctx.Deadline()
	return f.unhealthy
}

func (f *fakeSource) Readiness() Readiness { return f.ready }

// Promote promotes "follower", refuses "spool" (a primary), knows no
// other volume... and fails "broken".
func (f *fakeSource) Promote(_ context.Context, volume string) (PromoteResult, error) {
	switch volume {
	case "follower":
		return PromoteResult{Volume: volume, Dir: "/mnt", Term: 4, LSN: 17}, nil
	case "spool":
		return PromoteResult{}, fmt.Errorf("volume spool: %w: this node is its primary", ErrNotFollower)
	case "broken":
		return PromoteResult{}, errors.New("volume broken: becoming its primary: no quorum")
	}
	return PromoteResult{}, fmt.Errorf("volume %s: %w", volume, ErrNoSuchVolume)
}

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

// TestEndpoint: each path answers what the Source says — /healthz 200
// "ok" or 503 with one line per problem, with a deadline; /readyz 503 and
// JSON saying which part is not ready and why, 200 once every part is;
// /status is its status as JSON; /metrics has the collector's metrics.
func TestEndpoint(t *testing.T) {
	src := &fakeSource{ready: Readiness{
		Volumes: []VolumeReadiness{
			{Volume: "spool", Role: "primary", Term: 3, W: 2, Answering: 1, Replicas: 3, Reason: "below quorum"},
			{Volume: "queue", Role: "primary", Term: 2, W: 2, Answering: 3, Replicas: 3, Ready: true}},
		Replicas: []ReplicaReadiness{{Addr: "10.0.0.7:7400", Ready: true}}}}
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
	var rd Readiness
	if err := json.Unmarshal([]byte(body), &rd); code != http.StatusServiceUnavailable || err != nil || rd.Ready ||
		len(rd.Volumes) != 2 || rd.Volumes[0].Reason != "below quorum" || rd.Volumes[0].Answering != 1 || rd.Volumes[0].Role != "primary" {
		t.Errorf("/readyz with a volume below quorum: %d %v %s", code, err, body)
	}
	src.ready.Volumes[0].Ready = true
	if code, body := get(t, a.Addr(), "/readyz"); code != http.StatusOK || !strings.Contains(body, `"ready": true`) {
		t.Errorf("/readyz with every part ready: %d %s", code, body)
	}
	src.ready = Readiness{Reasons: []string{"nothing is served yet"}}
	if code, body := get(t, a.Addr(), "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "nothing is served yet") {
		t.Errorf("/readyz serving nothing: %d %s", code, body)
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

// TestPromoteEndpoint: POST /promote?volume=V answers what the Source's
// Promote says, and admin.Promote turns each answer into a result or an
// error that says why (404, 409 by their sentinels); GET is refused.
func TestPromoteEndpoint(t *testing.T) {
	a, err := Start("127.0.0.1:0", &fakeSource{}, prometheus.NewRegistry(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	ctx := context.Background()
	res, err := Promote(ctx, a.Addr(), "follower")
	if err != nil || res.Term != 4 || res.LSN != 17 || res.Dir != "/mnt" {
		t.Errorf("promote follower: %+v, %v", res, err)
	}
	if _, err := Promote(ctx, a.Addr(), "spool"); !errors.Is(err, ErrNotFollower) || !strings.Contains(err.Error(), "this node is its primary") {
		t.Errorf("promote a primary: %v, want ErrNotFollower and why", err)
	}
	if _, err := Promote(ctx, a.Addr(), "nope"); !errors.Is(err, ErrNoSuchVolume) {
		t.Errorf("promote an unknown volume: %v, want ErrNoSuchVolume", err)
	}
	if _, err := Promote(ctx, a.Addr(), "broken"); err == nil || !strings.Contains(err.Error(), "no quorum") {
		t.Errorf("promote failing: %v, want the reason", err)
	}
	if code, _ := get(t, a.Addr(), "/promote?volume=follower"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /promote: %d, want 405", code)
	}
	if _, err := Promote(ctx, "127.0.0.1:1", "follower"); err == nil || !strings.Contains(err.Error(), "no admin endpoint answers") {
		t.Errorf("promote with nothing listening: %v", err)
	}
}
