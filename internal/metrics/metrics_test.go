package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// An observation through a volume's Actor lands in its op's (and
// outcome's) series and in the right bucket, and allocates nothing: the
// actor calls it on every reply.
func TestActorObserves(t *testing.T) {
	s := New()
	a := s.Actor("v", []string{"unknown", "lookup", "flush"}, []string{"ok", "not_durable", "fenced"},
		[]string{"none", "capacity", "inodes"})
	a.OpDone(1, 30*time.Microsecond)
	a.OpDone(2, 3*time.Millisecond)
	a.WaitDone(2, 1, 30*time.Second)
	a.NotifyDone(time.Microsecond)
	a.OpDone(99, time.Second) // out of range: ignored, no panic
	a.WaitDone(2, 7, time.Second)
	a.LimitHit(2)
	a.LimitHit(0) // none, and out of range: ignored
	a.LimitHit(9)
	if n := testutil.CollectAndCount(s, "spoolfs_limit_hits_total"); n != 2 {
		t.Errorf("%d limit series, want 2 (capacity, inodes: made up front)", n)
	}
	if v := testutil.ToFloat64(s.limits.WithLabelValues("v", "inodes")); v != 1 {
		t.Errorf("inodes limit hits %v, want 1", v)
	}
	if n := testutil.CollectAndCount(s, "spoolfs_fuse_op_duration_seconds"); n != 3 {
		t.Errorf("%d op series, want 3 (one per op, made up front)", n)
	}
	if n := testutil.CollectAndCount(s, "spoolfs_durability_wait_seconds"); n != 9 {
		t.Errorf("%d wait series, want 9 (op × outcome)", n)
	}
	checkBucket(t, s.fuseOp.WithLabelValues("v", "lookup"), 0.00005, 1)
	checkBucket(t, s.fuseOp.WithLabelValues("v", "flush"), 0.0025, 0)
	checkBucket(t, s.fuseOp.WithLabelValues("v", "flush"), 0.005, 1)
	checkBucket(t, s.waits.WithLabelValues("v", "flush", "not_durable"), 30, 1)
	checkBucket(t, s.waits.WithLabelValues("v", "flush", "not_durable"), 10, 0)
	for _, w := range s.WaitTotals("v") {
		if (w.Outcome == "not_durable") != (w.Count == 1 && w.Sum == 30*time.Second) {
			t.Errorf("WaitTotals: %+v", w)
		}
	}
	allocs := testing.AllocsPerRun(1000, func() {
		a.OpDone(1, time.Millisecond)
		a.WaitDone(2, 0, time.Millisecond)
		a.NotifyDone(time.Microsecond)
		a.LimitHit(1)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per observation", allocs)
	}
}

// spoolfs_build_info carries the Go version and passes the registry's
// pedantic checks with the rest of the Set.
func TestBuildInfoAndLint(t *testing.T) {
	s := New()
	s.Fenced("v")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range fams {
		if f.GetName() == "spoolfs_build_info" {
			for _, l := range f.GetMetric()[0].GetLabel() {
				if l.GetName() == "goversion" && strings.HasPrefix(l.GetValue(), "go") {
					found = true
				}
			}
		}
	}
	if !found {
		t.Error("spoolfs_build_info without a goversion label")
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	if got := testutil.ToFloat64(s.fenced.WithLabelValues("v")); got != 1 {
		t.Errorf("fencing events = %v, want 1", got)
	}
}

// checkBucket says whether the cumulative count of o at bucket ub is want.
func checkBucket(t *testing.T, o prometheus.Observer, ub float64, want uint64) {
	t.Helper()
	h := o.(prometheus.Histogram)
	ch := make(chan prometheus.Metric, 1)
	h.Collect(ch)
	m := <-ch
	pb := new(dto.Metric)
	if err := m.Write(pb); err != nil {
		t.Fatal(err)
	}
	for _, b := range pb.GetHistogram().GetBucket() {
		if b.GetUpperBound() == ub {
			if b.GetCumulativeCount() != want {
				t.Errorf("bucket le=%v: %d, want %d", ub, b.GetCumulativeCount(), want)
			}
			return
		}
	}
	t.Errorf("no bucket le=%v", ub)
}

// A follower's applied batches count their records and observe their
// delay, without allocating (once per batch on the follower's goroutine).
func TestFollowerObserves(t *testing.T) {
	s := New()
	f := s.Follower("v")
	f.FollowApplied("v", 3, 0, 4*time.Millisecond)
	f.FollowApplied("v", 2, 5, 0) // delay unknown: not observed
	f.FollowResynced("v", 9)
	if got := testutil.ToFloat64(s.applied.WithLabelValues("v")); got != 5 {
		t.Errorf("applied records %v, want 5", got)
	}
	checkBucket(t, s.delay.WithLabelValues("v"), 0.005, 1)
	checkBucket(t, s.delay.WithLabelValues("v"), 0.002, 0)
	if allocs := testing.AllocsPerRun(1000, func() { f.FollowApplied("v", 1, 0, time.Millisecond) }); allocs != 0 {
		t.Errorf("%.1f allocations per batch", allocs)
	}
}
