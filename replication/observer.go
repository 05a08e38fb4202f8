package replication

import "time"

// PrimaryObserver is told what a primary measures as it happens: the time
// from sending records to a replica to its ack. replication imports no
// metrics library: node hands it one (internal/metrics, with a histogram
// per replica resolved up front). Called with Primary.mu held, from the
// links' goroutines: it must be safe for concurrent use and never block.
type PrimaryObserver interface {
	// Acked: replica (its index in PrimaryConfig.Replicas) acknowledged
	// records d after the newest of them was sent.
	Acked(replica int, d time.Duration)
	// DataRecord: a data record whose content holds bytes data bytes
	// (holes left out) is ready to ship — counted once per record, not
	// per replica; partial says it carries only the ranges changed since
	// the file's previous data record (Record.Partial). What a FLUSH
	// costs on the wire, per replica, is these bytes.
	DataRecord(bytes int, partial bool)
}

// ReplicaObserver is told what a replica server measures as it happens:
// each commit of a batch. Called from Ship streams at once: it must be
// safe for concurrent use and never block.
type ReplicaObserver interface {
	// Committed: a batch of records (how many the volume's lsn advanced
	// by) was made durable on volume; fsync is how long the fsync of the
	// database file took (0 for a store in memory).
	Committed(volume string, records int, fsync time.Duration)
}

// WithObserver has the replica server tell o of every commit.
func WithObserver(o ReplicaObserver) ReplicaOption {
	return func(s *ReplicaServer) { s.obs = o }
}

type nopReplicaObserver struct{}

func (nopReplicaObserver) Committed(string, int, time.Duration) {}
