package node

import (
	"runtime"
	"time"

	"go.uber.org/zap"
)

// adaptProcs keeps GOMAXPROCS at the number of Ship streams the replica
// serves — at least 1, at most the CPUs — until the replica stops.
//
// Why: the work of one stream is a pipeline that never runs in parallel
// with itself (the gRPC reader, the decoder, the applier that writes and
// fsyncs, the writer of acks). With more Ps than streams, each hand-off
// between those goroutines wakes an idle thread on another CPU, and in a
// VM a cross-CPU wake-up is the dearest thing the replica does: on the
// replicated benchmark (three replicas, the primary and the clients on 2
// CPUs) one P per replica cut the replicas' CPU per message by a fifth to
// a quarter (docs/benchmarks.md). A replica serving many volumes gets a P
// for each, up to the CPUs. GOMAXPROCS in the environment turns this off.
func (r *Replica) adaptProcs(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		want := min(max(r.srv.ShipStreams(), 1), runtime.NumCPU())
		if cur := runtime.GOMAXPROCS(0); cur != want {
			runtime.GOMAXPROCS(want)
			r.log.Debug("replica: GOMAXPROCS follows the streams served", zap.Int("from", cur), zap.Int("to", want))
		}
		select {
		case <-t.C:
		case <-r.done:
			return
		}
	}
}
