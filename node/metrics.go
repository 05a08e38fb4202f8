package node

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/fsactor"
	"github.com/spoolfs/spoolfs/internal/admin"
	"github.com/spoolfs/spoolfs/internal/metrics"
	"github.com/spoolfs/spoolfs/internal/process"
)

// The metrics of a node (/metrics). Read when scraped, from the actors'
// counters, the primaries' Status and the replica servers' Status: no
// goroutine keeps them.
var (
	volLabels  = []string{"volume"}
	linkLabels = []string{"volume", "replica"}
	repLabels  = []string{"replica", "volume"}

	mInfo      = prometheus.NewDesc("spoolfs_node_info", "The node (always 1).", []string{"node_id"}, nil)
	mOps       = prometheus.NewDesc("spoolfs_fuse_ops_total", "FUSE requests answered, by op.", []string{"volume", "op"}, nil)
	mErrnos    = prometheus.NewDesc("spoolfs_fuse_errors_total", "FUSE requests answered with an error, by op and errno.", []string{"volume", "op", "errno"}, nil)
	mNotify    = prometheus.NewDesc("spoolfs_notify_total", "Kernel notifications, by outcome (sent, benign, failed, dropped).", []string{"volume", "outcome"}, nil)
	mNotifyQ   = prometheus.NewDesc("spoolfs_notify_queue_depth", "Kernel notifications queued for the notify pool's workers now.", volLabels, nil)
	mTerm      = prometheus.NewDesc("spoolfs_primary_term", "The term this node holds the volume with.", volLabels, nil)
	mHead      = prometheus.NewDesc("spoolfs_primary_head_lsn", "The last record made.", volLabels, nil)
	mDurable   = prometheus.NewDesc("spoolfs_primary_durable_lsn", "The last record stored on W replicas.", volLabels, nil)
	mLogBytes  = prometheus.NewDesc("spoolfs_primary_log_bytes", "Bytes of records kept in memory for replicas that lack them.", volLabels, nil)
	mW         = prometheus.NewDesc("spoolfs_primary_write_quorum", "W: the replicas a record must reach to be durable (alert when fewer are connected).", volLabels, nil)
	mLost      = prometheus.NewDesc("spoolfs_primary_quorum_lost", "1 while a wait timed out with its record not durable: waits answer EIO at once until it is.", volLabels, nil)
	mDiskFree  = prometheus.NewDesc("spoolfs_replica_disk_free_bytes", "Bytes free to the replica server on its data directory's filesystem.", []string{"replica"}, nil)
	mDiskSize  = prometheus.NewDesc("spoolfs_replica_disk_size_bytes", "Size of the filesystem of the replica server's data directory.", []string{"replica"}, nil)
	mFenced    = prometheus.NewDesc("spoolfs_primary_fenced", "1 once a newer term took the volume (it answers EROFS).", volLabels, nil)
	mLag       = prometheus.NewDesc("spoolfs_replication_lag_records", "Records a replica lacks.", linkLabels, nil)
	mAcked     = prometheus.NewDesc("spoolfs_replication_acked_lsn", "The last record a replica stored durably.", linkLabels, nil)
	mConnected = prometheus.NewDesc("spoolfs_replication_connected", "1 while the stream to a replica is up.", linkLabels, nil)
	mResyncs   = prometheus.NewDesc("spoolfs_replication_resyncs_total", "Full snapshots sent to a replica.", linkLabels, nil)
	mInstalls  = prometheus.NewDesc("spoolfs_replication_installs_total", "Snapshot installs started on a replica.", linkLabels, nil)
	mOverflows = prometheus.NewDesc("spoolfs_replication_install_overflows_total", "Installs stopped because the writes outran them.", linkLabels, nil)
	mRepeats   = prometheus.NewDesc("spoolfs_replication_install_repeats_total", "Snapshots a replica needed again before it caught up after one.", linkLabels, nil)
	mQuorum    = prometheus.NewDesc("spoolfs_replication_quorum", "1 while a wait sends to this replica at once; 0 while it trails by up to the ship delay.", linkLabels, nil)
	mLagBytes  = prometheus.NewDesc("spoolfs_replication_lag_bytes", "Bytes of the records a replica lacks that the primary's log holds.", linkLabels, nil)
	mLagSecs   = prometheus.NewDesc("spoolfs_replication_lag_seconds", "How long ago the oldest record a replica lacks was made (0: it lacks none).", linkLabels, nil)
	mMemory    = prometheus.NewDesc("spoolfs_memory_bytes", "What a volume holds in memory, by kind: contents (files' memfds), log (records kept for replicas that lack them), snapshots (file contents a streamed snapshot kept).", []string{"volume", "kind"}, nil)
	mStoreLSN  = prometheus.NewDesc("spoolfs_replica_lsn", "The last record a replica server stores, per volume.", repLabels, nil)
	mStoreTerm = prometheus.NewDesc("spoolfs_replica_accepted_term", "The highest term a replica server accepted, per volume.", repLabels, nil)
	mStoreLast = prometheus.NewDesc("spoolfs_replica_last_term", "The term of the last record a replica server stores.", repLabels, nil)
	mCommits   = prometheus.NewDesc("spoolfs_replica_commits_total", "Batches a replica server committed (one fsync each).", repLabels, nil)
	mCompacts  = prometheus.NewDesc("spoolfs_replica_compactions_total", "Rewrites of a volume's database file by a replica server.", repLabels, nil)
	mInodes    = prometheus.NewDesc("spoolfs_replica_inodes", "Inodes a replica server stores, per volume.", repLabels, nil)
	mBytes     = prometheus.NewDesc("spoolfs_replica_data_bytes", "File bytes a replica server stores, per volume.", repLabels, nil)
	mReceived  = prometheus.NewDesc("spoolfs_replica_received_bytes_total", "Bytes of records and snapshots a replica server received, per volume.", repLabels, nil)
	mFailed    = prometheus.NewDesc("spoolfs_replica_storage_failed", "1 while a volume's storage on a replica server has failed (a write or fsync; it is opened again when the primary reconnects).", repLabels, nil)
	mTLSExpiry = prometheus.NewDesc("spoolfs_tls_cert_expiry_timestamp_seconds", "When the certificate this node presents expires (Unix time; with mTLS).", nil, nil)
	mTLSReload = prometheus.NewDesc("spoolfs_tls_reloads_total", "Changes of the TLS files: used (ok) or kept out (failed: they did not fit together or named another node).", []string{"result"}, nil)
)

// The process's own health: the watchdog and the log.
var (
	mStalls   = prometheus.NewDesc("spoolfs_watchdog_stalls_total", "Times the actor was stuck in one step past --watchdog while the kernel waited (each logged with all goroutines' stacks).", volLabels, nil)
	mLogFails = prometheus.NewDesc("spoolfs_log_write_failures_total", "Log lines that could not be written (e.g. stderr a closed pipe); never fatal.", nil, nil)
)

// nodeCollector is the prometheus.Collector of a Node.
type nodeCollector struct{ n *Node }

// Describe implements prometheus.Collector.
func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mInfo, mOps, mErrnos, mNotify, mNotifyQ, mTerm, mHead, mDurable, mLogBytes, mW, mLost, mDiskFree, mDiskSize, mFenced,
		mLag, mAcked, mConnected, mResyncs, mInstalls, mOverflows, mRepeats, mQuorum, mLagBytes, mLagSecs, mMemory, mStoreLSN, mStoreTerm, mStoreLast, mCommits, mCompacts, mInodes, mBytes, mReceived, mFailed, mTLSExpiry, mTLSReload} {
		ch <- d
	}
	ch <- mStalls
	ch <- mLogFails
	for _, d := range followerMetrics {
		ch <- d
	}
	metrics.Default.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	metrics.Default.Collect(ch)
	ch <- prometheus.MustNewConstMetric(mInfo, prometheus.GaugeValue, 1, c.n.id)
	ch <- prometheus.MustNewConstMetric(mLogFails, prometheus.CounterValue, float64(process.LogWriteFailures()))
	vols, reps := c.n.parts()
	c.n.mu.Lock()
	tm := c.n.tls
	c.n.mu.Unlock()
	if tm != nil {
		ts := tm.Status()
		ch <- prometheus.MustNewConstMetric(mTLSExpiry, prometheus.GaugeValue, float64(ts.NotAfter.Unix()))
		ch <- prometheus.MustNewConstMetric(mTLSReload, prometheus.CounterValue, float64(ts.Reloads), "ok")
		ch <- prometheus.MustNewConstMetric(mTLSReload, prometheus.CounterValue, float64(ts.Failures), "failed")
	}
	for _, v := range vols {
		v.collect(ch)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, r := range reps {
		collectDisk(ch, r.Addr(), r.DataDir())
		resp, err := r.Status(ctx)
		if err != nil {
			continue
		}
		for _, v := range admin.ReplicaStatusFromPB(r.Addr(), resp).Volumes {
			collectStore(ch, r.Addr(), v)
		}
	}
}

// collect reports a primary: its actor and its replication.
func (rv *ReplicatedVolume) collect(ch chan<- prometheus.Metric) {
	name := rv.name()
	counter, gauge := emitters(ch)
	st := rv.primary.Status()
	collectActor(ch, name, rv.Server(), st.LogBytes)
	gauge(mTerm, float64(st.Term), name)
	gauge(mHead, float64(st.Head), name)
	gauge(mDurable, float64(st.Durable), name)
	gauge(mLogBytes, float64(st.LogBytes), name)
	for _, l := range rv.primary.Lags() {
		gauge(mLagBytes, float64(l.Bytes), name, l.Addr)
		gauge(mLagSecs, l.Seconds, name, l.Addr)
	}
	gauge(mFenced, b2f(st.Fenced), name)
	gauge(mW, float64(st.W), name)
	gauge(mLost, b2f(st.QuorumLost), name)
	for _, l := range st.Replicas {
		gauge(mLag, float64(l.Lag), name, l.Addr)
		gauge(mAcked, float64(l.Acked), name, l.Addr)
		gauge(mConnected, b2f(l.Connected), name, l.Addr)
		counter(mResyncs, uint64(l.Resyncs), name, l.Addr)
		counter(mInstalls, uint64(l.Installs), name, l.Addr)
		counter(mOverflows, uint64(l.Overflows), name, l.Addr)
		counter(mRepeats, uint64(l.Repeats), name, l.Addr)
		gauge(mQuorum, b2f(l.Quorum), name, l.Addr)
	}
}

// emitters returns helpers writing constant counters and gauges to ch.
func emitters(ch chan<- prometheus.Metric) (counter func(*prometheus.Desc, uint64, ...string), gauge func(*prometheus.Desc, float64, ...string)) {
	counter = func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge = func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	return counter, gauge
}

// collectActor reports what a volume's actor counts, whatever its role;
// logBytes is its records' log in memory (a primary's; 0 on a follower).
func collectActor(ch chan<- prometheus.Metric, name string, srv *fsactor.Server, logBytes int64) {
	counter, gauge := emitters(ch)
	for op, n := range srv.OpCounts() {
		counter(mOps, n, name, op)
	}
	for key, n := range srv.ErrnoCounts() {
		op, errno, _ := strings.Cut(key, "/")
		counter(mErrnos, n, name, op, errno)
	}
	counter(mStalls, srv.WatchdogStalls(), name)
	ns := srv.NotifyStats()
	counter(mNotify, ns.Sent, name, "sent")
	counter(mNotify, ns.Benign, name, "benign")
	counter(mNotify, ns.Failed, name, "failed")
	counter(mNotify, ns.Dropped, name, "dropped")
	counter(mNotify, ns.Overflowed, name, "overflowed")
	counter(mNotify, ns.Coalesced, name, "coalesced")
	gauge(mNotifyQ, float64(ns.Queued), name)
	gauge(mMemory, float64(logBytes), name, "log")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if mem, err := srv.Memory(ctx); err == nil { // not while the actor is stuck
		gauge(mMemory, float64(mem.Contents), name, "contents")
		gauge(mMemory, float64(mem.Snapshots), name, "snapshots")
	}
}

func collectStore(ch chan<- prometheus.Metric, addr string, v admin.ReplicaVolStatus) {
	gauge := func(d *prometheus.Desc, x uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(x), addr, v.Volume)
	}
	ch <- prometheus.MustNewConstMetric(mFailed, prometheus.GaugeValue, b2f(v.Failed != ""), addr, v.Volume)
	ch <- prometheus.MustNewConstMetric(mReceived, prometheus.CounterValue, float64(v.ReceivedBytes), addr, v.Volume)
	if v.Failed != "" {
		return // the rest is unknown while the store is closed
	}
	gauge(mStoreLSN, v.LSN)
	gauge(mStoreTerm, v.AcceptedTerm)
	gauge(mStoreLast, v.LastTerm)
	gauge(mInodes, v.Inodes)
	gauge(mBytes, v.DataBytes)
	ch <- prometheus.MustNewConstMetric(mCommits, prometheus.CounterValue, float64(v.Commits), addr, v.Volume)
	ch <- prometheus.MustNewConstMetric(mCompacts, prometheus.CounterValue, float64(v.Compactions), addr, v.Volume)
}

// collectDisk reports the filesystem of a replica server's data directory.
func collectDisk(ch chan<- prometheus.Metric, addr, dir string) {
	var fs unix.Statfs_t
	if dir == "" || unix.Statfs(dir, &fs) != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(mDiskFree, prometheus.GaugeValue, float64(fs.Bavail)*float64(fs.Bsize), addr)
	ch <- prometheus.MustNewConstMetric(mDiskSize, prometheus.GaugeValue, float64(fs.Blocks)*float64(fs.Bsize), addr)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
