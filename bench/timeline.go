package bench

import (
	"sync/atomic"
	"time"
)

// sampleEvery is how often a run samples its operation count for the
// timeline (Result.Timeline) and for Options.Progress.
const sampleEvery = 100 * time.Millisecond

// Sample is the number of iterations completed, all clients together, At
// a time since the clients started.
type Sample struct {
	At  time.Duration `json:"at_ns"`
	Ops uint64        `json:"ops"`
}

// sampler counts the iterations of a run as they complete and samples the
// count every sampleEvery: the throughput over time of the plot and what
// a progress bar shows. Clients add to ops; one goroutine reads it.
type sampler struct {
	ops      atomic.Uint64
	progress func(ops uint64, elapsed time.Duration) // Options.Progress, may be nil
	stop     chan struct{}
	done     chan []Sample
}

func startSampler(t0 time.Time, progress func(uint64, time.Duration)) *sampler {
	s := &sampler{progress: progress, stop: make(chan struct{}), done: make(chan []Sample, 1)}
	go s.loop(t0)
	return s
}

// loop samples until finish; the last sample is taken at the end.
func (s *sampler) loop(t0 time.Time) {
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	var out []Sample
	take := func() {
		smp := Sample{At: time.Since(t0), Ops: s.ops.Load()}
		out = append(out, smp)
		if s.progress != nil {
			s.progress(smp.Ops, smp.At)
		}
	}
	for {
		select {
		case <-tick.C:
			take()
		case <-s.stop:
			take()
			s.done <- out
			return
		}
	}
}

// finish stops the sampler and returns the timeline.
func (s *sampler) finish() []Sample {
	close(s.stop)
	return <-s.done
}

// Throughput turns a timeline into ops/s over each interval between two
// samples, at the interval's end. An interval under a tenth of the
// sampling period (the last sample, taken as the run stops just after a
// tick) is folded into the next one or dropped: its rate is noise.
func Throughput(tl []Sample) (at []time.Duration, opsPerSec []float64) {
	var prev Sample
	for _, s := range tl {
		dt := s.At - prev.At
		if dt >= sampleEvery/10 {
			at = append(at, s.At)
			opsPerSec = append(opsPerSec, float64(s.Ops-prev.Ops)/dt.Seconds())
			prev = s
		}
	}
	return at, opsPerSec
}
