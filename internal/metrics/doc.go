// Package metrics owns the Prometheus metrics a node observes as things
// happen — histograms and counters with prometheus/client_golang types:
// FUSE op latency by op, durability waits by op and outcome, the delay of
// kernel notifications, replica acks, replica fsyncs and batch sizes,
// fencing events — and spoolfs_build_info. What node reads when scraped
// (lsns, lag, memory, counters the actor and replication keep) is node's
// collector (node/metrics.go), registered next to this one.
//
// The actor and replication import no metrics library: each says what it
// measures through an observer interface (fsactor.Observer,
// replication.Observer), which the types here implement with histogram
// children resolved once per volume, so an observation on the hot path is
// a slice index and an atomic add: nothing allocates (metrics_test.go).
//
// Default is the process's one Set: a node serves its volumes and
// replicas in one process and exports one /metrics, so the Set is shared
// the way prometheus.DefaultRegisterer is; volumes are told apart by
// their label.
//
// May import: the standard library and prometheus/client_golang; nothing
// of ours (internal/layout).
package metrics
