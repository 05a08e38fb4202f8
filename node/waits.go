package node

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/spoolfs/spoolfs/fsactor"
)

// WaitBuckets are the upper bounds, in seconds, of the histogram of
// durability waits (close, fsync, rename, link, and every mutation with
// -o sync): from a fast local quorum to the flush timeout.
var WaitBuckets = []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// Wait outcomes, the label of the histogram.
const (
	WaitOK      = "ok"          // the record reached W replicas
	WaitTimeout = "not_durable" // flush timeout or no quorum: the caller got EIO
	WaitFenced  = "fenced"      // a newer term took the volume: EIO, then EROFS
)

// WaitStats counts the durability waits of one volume, by outcome, in
// WaitBuckets. Safe for concurrent use; no lock on the hot path.
type WaitStats struct {
	by [3]waitHist
}

type waitHist struct {
	buckets [17]atomic.Uint64 // len(WaitBuckets)+1: the last is +Inf
	count   atomic.Uint64
	sumNs   atomic.Uint64
}

// WaitHistogram is one outcome's histogram: cumulative counts per bucket
// (as Prometheus wants them), the number of waits and their total.
type WaitHistogram struct {
	Result  string
	Count   uint64
	Sum     time.Duration
	Buckets map[float64]uint64
}

func (h *waitHist) add(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(WaitBuckets) && s > WaitBuckets[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.count.Add(1)
	h.sumNs.Add(uint64(d))
}

// Observe records one wait.
func (w *WaitStats) Observe(result string, d time.Duration) {
	switch result {
	case WaitOK:
		w.by[0].add(d)
	case WaitTimeout:
		w.by[1].add(d)
	default:
		w.by[2].add(d)
	}
}

// Histograms returns the three outcomes' histograms.
func (w *WaitStats) Histograms() []WaitHistogram {
	out := make([]WaitHistogram, 0, 3)
	for i, name := range []string{WaitOK, WaitTimeout, WaitFenced} {
		h := &w.by[i]
		wh := WaitHistogram{Result: name, Count: h.count.Load(), Sum: time.Duration(h.sumNs.Load()),
			Buckets: make(map[float64]uint64, len(WaitBuckets))}
		var cum uint64
		for j, ub := range WaitBuckets {
			cum += h.buckets[j].Load()
			wh.Buckets[ub] = cum
		}
		out = append(out, wh)
	}
	return out
}

// meteredSink times every Wait of the sink it wraps.
type meteredSink struct {
	fsactor.Sink
	stats *WaitStats
}

// Wait implements fsactor.Sink.
func (m *meteredSink) Wait(ctx context.Context, lsn uint64) error {
	start := time.Now()
	err := m.Sink.Wait(ctx, lsn)
	m.stats.Observe(waitOutcome(err), time.Since(start))
	return err
}

func waitOutcome(err error) string {
	switch {
	case err == nil:
		return WaitOK
	case errors.Is(err, fsactor.ErrFenced):
		return WaitFenced
	}
	return WaitTimeout
}
