package metrics

import (
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// OpBuckets are the upper bounds, in seconds, of the FUSE op latency
// histogram: from a lookup answered from memory (tens of microseconds) to
// a close waiting out the flush timeout (30 s).
var OpBuckets = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// WaitBuckets are the upper bounds, in seconds, of the durability-wait and
// replica-ack histograms: from a fast local quorum to the flush timeout.
var WaitBuckets = []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// FsyncBuckets are the upper bounds, in seconds, of a replica's fsync of
// a volume's database file (one per batch).
var FsyncBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// BatchBuckets are the upper bounds of a replica's batch size, in records.
var BatchBuckets = prometheus.ExponentialBuckets(1, 2, 12) // 1 … 2048

// NotifyBuckets are the upper bounds, in seconds, of the delay from the
// actor queueing a kernel notification to its write.
var NotifyBuckets = []float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.05, 0.25, 1}

// Set holds the metrics a node observes as they happen. Safe for
// concurrent use.
type Set struct {
	fuseOp  *prometheus.HistogramVec // volume, op
	waits   *prometheus.HistogramVec // volume, op, outcome
	notify  *prometheus.HistogramVec // volume
	limits  *prometheus.CounterVec   // volume, limit
	acks    *prometheus.HistogramVec // volume, replica
	shipped *prometheus.CounterVec   // volume
	dataRec *prometheus.CounterVec   // volume, kind
	fenced  *prometheus.CounterVec   // volume
	fsync   *prometheus.HistogramVec // replica, volume
	batches *prometheus.HistogramVec // replica, volume
	applied *prometheus.CounterVec   // volume: records a follower applied
	delay   *prometheus.HistogramVec // volume: a follower's batches, durable on the source to applied
	build   prometheus.Gauge
}

// Default is the process's Set.
var Default = New()

// New returns an empty Set (tests use their own).
func New() *Set {
	h := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	}
	return &Set{
		fuseOp: h("spoolfs_fuse_op_duration_seconds",
			"FUSE requests from the actor reading them to their reply, by op (errors included; a close that waits for W replicas included).",
			OpBuckets, "volume", "op"),
		waits: h("spoolfs_durability_wait_seconds",
			"Waits for W replicas (close, fsync, rename, link; every mutation with -o sync), by op and outcome (ok, not_durable: EIO, fenced).",
			WaitBuckets, "volume", "op", "outcome"),
		notify: h("spoolfs_notify_delay_seconds",
			"Kernel notifications: from the actor queueing one to its write to the device.",
			NotifyBuckets, "volume"),
		acks: h("spoolfs_replication_ack_seconds",
			"From sending records to a replica to its ack that they are stored durably.",
			WaitBuckets, "volume", "replica"),
		shipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spoolfs_replication_shipped_bytes_total",
			Help: "Content bytes of the data records a primary made (holes left out), once per record: each replica is sent them once."},
			[]string{"volume"}),
		dataRec: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spoolfs_replication_data_records_total",
			Help: "Data records a primary made (one per FLUSH, FSYNC or RELEASE of a changed file), by kind: partial (the ranges changed) or whole (the file's content)."},
			[]string{"volume", "kind"}),
		fenced: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spoolfs_fencing_events_total",
			Help: "Times this node learnt that a newer term took a volume it was primary of (it turns read-only)."},
			[]string{"volume"}),
		fsync: h("spoolfs_replica_fsync_seconds",
			"A replica server's fsyncs of a volume's database file, one per committed batch.",
			FsyncBuckets, "replica", "volume"),
		batches: h("spoolfs_replica_batch_records",
			"Records a replica server made durable in one commit.",
			BatchBuckets, "replica", "volume"),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spoolfs_follower_applied_records_total",
			Help: "Records a follower applied to its mount (snapshots not counted)."}, []string{"volume"}),
		delay: h("spoolfs_follower_apply_delay_seconds",
			"A follower's batches of records: from the oldest being durable on the source replica to the batch applied and its kernel notes queued (the source's clock against ours).",
			WaitBuckets, "volume"),
		limits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spoolfs_limit_hits_total",
			Help: "Ops answered ENOSPC because the volume ran out of a limit: capacity (--capacity), inodes (--max-inodes), descriptors (the open-file limit)."},
			[]string{"volume", "limit"}),
		build: buildInfo(),
	}
}

// Describe implements prometheus.Collector.
func (s *Set) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range s.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (s *Set) Collect(ch chan<- prometheus.Metric) {
	for _, c := range s.collectors() {
		c.Collect(ch)
	}
}

func (s *Set) collectors() []prometheus.Collector {
	return []prometheus.Collector{s.fuseOp, s.waits, s.notify, s.acks, s.shipped, s.dataRec, s.fenced, s.fsync, s.batches, s.applied, s.delay, s.limits, s.build}
}

// Fenced counts one fencing event of volume.
func (s *Set) Fenced(volume string) { s.fenced.WithLabelValues(volume).Inc() }

// buildInfo is spoolfs_build_info: always 1, with the module version, the
// VCS commit and the Go version the binary was built from.
func buildInfo() prometheus.Gauge {
	version, commit := "unknown", "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		version = info.Main.Version
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				commit = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "spoolfs_build_info",
		Help:        "The binary (always 1): module version, VCS commit and Go version it was built from.",
		ConstLabels: prometheus.Labels{"version": version, "commit": commit, "goversion": runtime.Version()}})
	g.Set(1)
	return g
}

// Actor is the fsactor.Observer of one volume: its histogram children are
// resolved when it is made, one per op and outcome, so an observation
// allocates nothing.
type Actor struct {
	ops    []prometheus.Observer   // by op index
	waits  [][]prometheus.Observer // by op index, then outcome index
	notify prometheus.Observer
	limits []prometheus.Counter // by limit index
}

// Actor returns the observer of volume's actor; ops, outcomes and limits
// name the indices it is given (fsactor.OpNames, fsactor.WaitOutcomes,
// fsactor.LimitNames; the limit at index 0, "none", is not exported).
func (s *Set) Actor(volume string, ops, outcomes, limits []string) *Actor {
	a := &Actor{notify: s.notify.WithLabelValues(volume)}
	for i, l := range limits {
		a.limits = append(a.limits, nil)
		if i > 0 {
			a.limits[i] = s.limits.WithLabelValues(volume, l) // 0 until hit: an alert can name it
		}
	}
	s.fenced.WithLabelValues(volume) // 0 until one happens: an alert can name it
	for _, op := range ops {
		a.ops = append(a.ops, s.fuseOp.WithLabelValues(volume, op))
		var w []prometheus.Observer
		for _, o := range outcomes {
			w = append(w, s.waits.WithLabelValues(volume, op, o))
		}
		a.waits = append(a.waits, w)
	}
	return a
}

// OpDone implements fsactor.Observer.
func (a *Actor) OpDone(op int, d time.Duration) {
	if op >= 0 && op < len(a.ops) {
		a.ops[op].Observe(d.Seconds())
	}
}

// WaitDone implements fsactor.Observer.
func (a *Actor) WaitDone(op, outcome int, d time.Duration) {
	if op >= 0 && op < len(a.waits) && outcome >= 0 && outcome < len(a.waits[op]) {
		a.waits[op][outcome].Observe(d.Seconds())
	}
}

// NotifyDone implements fsactor.Observer.
func (a *Actor) NotifyDone(d time.Duration) { a.notify.Observe(d.Seconds()) }

// LimitHit implements fsactor.Observer.
func (a *Actor) LimitHit(limit int) {
	if limit > 0 && limit < len(a.limits) {
		a.limits[limit].Inc()
	}
}

// WaitTotal is the count and total time of one outcome's durability waits.
type WaitTotal struct {
	Outcome string
	Count   uint64
	Sum     time.Duration
}

// WaitTotals sums volume's durability waits over its ops, by outcome, in
// the order of their names (`spoolfs status` shows their means).
func (s *Set) WaitTotals(volume string) []WaitTotal {
	ch := make(chan prometheus.Metric, 64)
	go func() { s.waits.Collect(ch); close(ch) }()
	var out []WaitTotal
	idx := map[string]int{}
	for m := range ch {
		var pb dto.Metric
		if m.Write(&pb) != nil {
			continue
		}
		lv := map[string]string{}
		for _, l := range pb.GetLabel() {
			lv[l.GetName()] = l.GetValue()
		}
		if lv["volume"] != volume {
			continue
		}
		o := lv["outcome"]
		i, ok := idx[o]
		if !ok {
			i = len(out)
			idx[o] = i
			out = append(out, WaitTotal{Outcome: o})
		}
		h := pb.GetHistogram()
		out[i].Count += h.GetSampleCount()
		out[i].Sum += time.Duration(h.GetSampleSum() * float64(time.Second))
	}
	return out
}

// Primary is the replication.PrimaryObserver of one volume's primary: one
// ack histogram per replica and the data-record counters, resolved when
// it is made.
type Primary struct {
	acks                    []prometheus.Observer
	shipped, partial, whole prometheus.Counter
}

// Primary returns the observer of volume's primary; replicas are its
// replica addresses, in the order the observer's indices follow.
func (s *Set) Primary(volume string, replicas []string) *Primary {
	p := &Primary{shipped: s.shipped.WithLabelValues(volume),
		partial: s.dataRec.WithLabelValues(volume, "partial"), whole: s.dataRec.WithLabelValues(volume, "whole")}
	for _, r := range replicas {
		p.acks = append(p.acks, s.acks.WithLabelValues(volume, r))
	}
	return p
}

// Acked implements replication.PrimaryObserver.
func (p *Primary) Acked(replica int, d time.Duration) {
	if replica >= 0 && replica < len(p.acks) {
		p.acks[replica].Observe(d.Seconds())
	}
}

// DataRecord implements replication.PrimaryObserver.
func (p *Primary) DataRecord(bytes int, partial bool) {
	p.shipped.Add(float64(bytes))
	if partial {
		p.partial.Inc()
	} else {
		p.whole.Inc()
	}
}

// Replica is the replication.ReplicaObserver of one replica server.
type Replica struct {
	s    *Set
	addr atomic.Pointer[string]
}

// Replica returns the observer of a replica server listening on addr (the
// label its other metrics carry; SetAddr once the port is known).
func (s *Set) Replica(addr string) *Replica {
	r := &Replica{s: s}
	r.SetAddr(addr)
	return r
}

// SetAddr names the address the replica server listens on: the server
// opens its volumes (and may commit) before it listens.
func (r *Replica) SetAddr(addr string) { r.addr.Store(&addr) }

// Committed implements replication.ReplicaObserver: once per batch, so a
// lookup of the volume's children is cheap enough.
func (r *Replica) Committed(volume string, records int, fsync time.Duration) {
	addr := *r.addr.Load()
	r.s.batches.WithLabelValues(addr, volume).Observe(float64(records))
	if fsync > 0 {
		r.s.fsync.WithLabelValues(addr, volume).Observe(fsync.Seconds())
	}
}

// Follower is the replication.FollowerObserver of one volume's follower:
// its children resolved when it is made. Its resyncs and reconnects are
// read from the follower's status when scraped (node's collector).
type Follower struct {
	applied prometheus.Counter
	delay   prometheus.Observer
}

// Follower returns the observer of volume's follower.
func (s *Set) Follower(volume string) *Follower {
	return &Follower{applied: s.applied.WithLabelValues(volume), delay: s.delay.WithLabelValues(volume)}
}

// FollowApplied implements replication.FollowerObserver.
func (f *Follower) FollowApplied(_ string, records int, _ uint64, lag time.Duration) {
	f.applied.Add(float64(records))
	if lag > 0 {
		f.delay.Observe(lag.Seconds())
	}
}

// FollowResynced implements replication.FollowerObserver (counted from
// the follower's status instead).
func (f *Follower) FollowResynced(string, uint64) {}
