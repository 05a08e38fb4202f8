package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/credentials"

	"github.com/spoolfs/spoolfs/fsactor"
	"github.com/spoolfs/spoolfs/internal/admin"
	"github.com/spoolfs/spoolfs/internal/config"
	"github.com/spoolfs/spoolfs/internal/metrics"
	"github.com/spoolfs/spoolfs/internal/mountdev"
	"github.com/spoolfs/spoolfs/replication"
)

// ReplicationOptions says how a mounted volume is replicated.
type ReplicationOptions struct {
	NodeID   string   // recorded by the replicas with the term this node takes
	Replicas []string // host:port of each replica (3 in production)
	W        int      // write quorum; 0: a majority
	// MaxLogBytes bounds the in-memory log of records some replica lacks
	// (0: 256 MiB); a replica further behind gets a full snapshot.
	MaxLogBytes int64
	// AcquireTimeout bounds taking the term and recovering (0: 30s).
	AcquireTimeout time.Duration
	// Creds secures the connections to the replicas (mTLS); nil: plaintext.
	Creds credentials.TransportCredentials
	// Progress reports recovery, and a follower's first load
	// (MountFollower); nil: ProgressFor(os.Stderr, log).
	Progress func(replication.Progress)
	// ReadyWithin is how recently W replicas must have answered for the
	// volume to be ready (/readyz) and for `spoolfs status` to count a
	// replica in its quorum (0: admin.DefaultReadyWithin, 3 s).
	ReadyWithin time.Duration
	// MaxFollowLag: a follower is ready while connected and behind its
	// source by less than this (0: admin.DefaultMaxFollowLag, 5 s).
	MaxFollowLag time.Duration
}

// ReplicatedVolume is a mounted volume whose records go to replicas: the
// Volume serving it and the Primary shipping its records.
type ReplicatedVolume struct {
	*Volume
	primary *replication.Primary
	watched chan struct{} // closed when watchFenced returned
	// readyWithin: ReplicationOptions.ReadyWithin with its default.
	readyWithin time.Duration
}

// MountReplicated makes this node the primary of o.Volume and mounts it:
// it takes a new term from a quorum of r.Replicas and recovers the volume's
// most advanced state from them (replication.OpenPrimary) BEFORE the mount
// exists, so nothing is ever served from a state older than what was
// acknowledged. Then it mounts (Mount) with the recovered state and a sink
// shipping every record to the replicas. ctx bounds only the recovery.
func MountReplicated(ctx context.Context, o config.MountOptions, r ReplicationOptions, log *zap.Logger) (*ReplicatedVolume, error) {
	if o.ReadOnly || o.Follower {
		return nil, errors.New("-o ro with replicas: a read-only mount of a replicated volume is a follower (MountFollower)")
	}
	if err := config.ValidateVolumeName(o.Volume); err != nil {
		return nil, err
	}
	if _, err := mountdev.PrepareMountPoint(o.Dir, log); err != nil {
		return nil, err // before taking the term: a bad mount point fences nobody
	}
	p, snap, err := openPrimary(ctx, o, r, log)
	if err != nil {
		return nil, err
	}
	lsn, inodes := snap.LSN, len(snap.Inodes)
	v, err := Mount(o, NewReplSink(p), snap, log)
	if err != nil {
		p.Close()
		return nil, err
	}
	rv := newReplicatedVolume(v, p, r)
	log.Info("primary serving", zap.String("volume", o.Volume), zap.Uint64("term", p.Term()),
		zap.Uint64("lsn", lsn), zap.Int("inodes", inodes), zap.Strings("replicas", r.Replicas))
	releaseRestored()
	return rv, nil
}

// openPrimary takes a new term for o.Volume from a quorum of r.Replicas
// and recovers its most advanced state (replication.OpenPrimary), with
// the progress reported as r.Progress says.
func openPrimary(ctx context.Context, o config.MountOptions, r ReplicationOptions, log *zap.Logger) (*replication.Primary, *replication.Snapshot, error) {
	progress := r.Progress
	if progress == nil {
		progress = ProgressFor(os.Stderr, log)
	}
	p, snap, err := replication.OpenPrimary(ctx, replication.PrimaryConfig{
		Volume: o.Volume, NodeID: r.NodeID, Replicas: r.Replicas, W: r.W, Creds: r.Creds,
		AcquireTimeout: r.AcquireTimeout, MaxLogBytes: r.MaxLogBytes,
		Root:     replication.Attr{Mode: o.RootMode, Uid: o.RootUid, Gid: o.RootGid},
		Progress: progress, Log: log.Named("replication"),
		Observer: metrics.Default.Primary(o.Volume, r.Replicas),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("volume %s: becoming its primary: %w", o.Volume, err)
	}
	return p, snap, nil
}

// newReplicatedVolume serves v, whose actor ships its records through p:
// p resyncs replicas from the actor's snapshots, and watchFenced turns
// the volume read-only once a newer term takes it.
func newReplicatedVolume(v *Volume, p *replication.Primary, r ReplicationOptions) *ReplicatedVolume {
	p.SetSnapshotSource(ActorSnapshots(v.Server()))
	rv := &ReplicatedVolume{Volume: v, primary: p, watched: make(chan struct{}), readyWithin: r.ReadyWithin}
	if rv.readyWithin <= 0 {
		rv.readyWithin = admin.DefaultReadyWithin
	}
	go rv.watchFenced()
	return rv
}

// watchFenced turns the volume read-only as soon as the primary learns that
// a newer term took the volume, even if no close() is waiting to notice:
// every later mutation answers EROFS. It returns when the primary fails or
// closes.
func (rv *ReplicatedVolume) watchFenced() {
	defer close(rv.watched)
	<-rv.primary.Done()
	if !rv.primary.Fenced() {
		return
	}
	metrics.Default.Fenced(rv.opts.Volume)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	why := "another node took the volume with a newer term: " + rv.primary.Status().Err
	if serr := rv.Server().SetReadOnly(ctx, why); serr != nil && !errors.Is(serr, fsactor.ErrStopped) {
		rv.log.Error("could not turn the fenced volume read-only", zap.Error(serr))
	}
}

// Primary is the replication side of the volume.
func (rv *ReplicatedVolume) Primary() *replication.Primary { return rv.primary }

// Close ends replication after the volume stopped serving (Done): it waits
// up to drain for the records not yet on W replicas (unlinks and attribute
// changes are shipped without waiting), logs what is left if any, and
// closes the primary.
func (rv *ReplicatedVolume) Close(drain time.Duration) {
	st := rv.primary.Status()
	if st.Durable < st.Head && !st.Fenced {
		ctx, cancel := context.WithTimeout(context.Background(), drain)
		err := rv.primary.Wait(ctx, st.Head)
		cancel()
		if err != nil {
			rv.log.Error("records not on a write quorum when the primary stopped", zap.String("volume", st.Volume),
				zap.Uint64("head", st.Head), zap.Uint64("durable", rv.primary.Durable()), zap.Error(err))
		}
	}
	if !st.Fenced {
		// The trailing replica gets the last records too (a short bound:
		// it is not needed for the promise, only spares it a catch-up).
		ctx, cancel := context.WithTimeout(context.Background(), min(drain, 2*time.Second))
		if err := rv.primary.Drain(ctx); err != nil {
			rv.log.Warn("a replica is behind as the primary stops; it catches up from the next primary", zap.Error(err))
		}
		cancel()
	}
	rv.primary.Close()
	<-rv.watched
	rv.log.Info("primary closed", zap.String("volume", st.Volume), zap.Uint64("term", st.Term),
		zap.Uint64("durable", rv.primary.Durable()))
}

// replicationOf is how volume v of a node config is replicated, for
// MountReplicated.
func replicationOf(v *config.Volume, nodeID string) ReplicationOptions {
	return ReplicationOptions{NodeID: nodeID, Replicas: v.Replicas, W: v.W,
		MaxLogBytes: int64(v.LogBytes), AcquireTimeout: v.AcquireTimeout, ReadyWithin: v.ReadyWithin,
		MaxFollowLag: v.MaxFollowLag}
}
