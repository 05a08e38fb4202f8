package node

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.uber.org/zap"

	"github.com/spoolfs/spoolfs/fsactor"
	"github.com/spoolfs/spoolfs/internal/admin"
	"github.com/spoolfs/spoolfs/internal/config"
	"github.com/spoolfs/spoolfs/internal/metrics"
	"github.com/spoolfs/spoolfs/internal/mountdev"
	"github.com/spoolfs/spoolfs/replication"
)

// FollowerVolume is a volume this node follows: mounted from a snapshot of
// its most advanced replica, kept current by a replication.Follower that
// applies the primary's records to the actor (fsactor Config.Follower:
// every mutation answers EROFS). Promote makes this node the volume's
// primary without an unmount; from then on it is served as a
// ReplicatedVolume is.
type FollowerVolume struct {
	*Volume
	r   ReplicationOptions // with its defaults
	obs *followObserver

	// promoting serialises Promote, and a resume after a failed one.
	promoting sync.Mutex

	mu sync.Mutex
	// follower is the stream being applied; nil while none is (a
	// promotion stopped it, a resume is fetching a new snapshot, or the
	// volume is stopping).
	follower *replication.Follower
	// primary is set once promoted; then the volume is a primary.
	primary *ReplicatedVolume
	// state says what the volume does while follower and primary are
	// both nil: "promoting", "resuming", "stopped".
	state   string
	lastErr string
	// resumeCancel ends a resume in progress; resumeDone is closed when
	// it returned (nil when none ran).
	resumeCancel context.CancelFunc
	resumeDone   chan struct{}
	stopped      bool // stopFollowing ran: nothing follows again
}

// MountFollower mounts o.Volume at o.Dir as a follower: it fetches the
// volume's snapshot from the most advanced reachable replica of
// r.Replicas (replication.OpenFollower; ctx bounds it), mounts it
// read-only (o is made a follower's: config.MountOptions.Follow), then
// follows the volume's records until the volume stops or is promoted.
// r.AcquireTimeout (0: 30 s) bounds the loading, as it bounds a primary's
// recovery.
func MountFollower(ctx context.Context, o config.MountOptions, r ReplicationOptions, log *zap.Logger) (*FollowerVolume, error) {
	o.Follow()
	if err := config.ValidateVolumeName(o.Volume); err != nil {
		return nil, err
	}
	if _, err := mountdev.PrepareMountPoint(o.Dir, log); err != nil {
		return nil, err
	}
	if r.MaxFollowLag <= 0 {
		r.MaxFollowLag = admin.DefaultMaxFollowLag
	}
	if r.ReadyWithin <= 0 {
		r.ReadyWithin = admin.DefaultReadyWithin
	}
	obs := &followObserver{m: metrics.Default.Follower(o.Volume)}
	log.Info("follower: loading the volume from its most advanced replica", zap.String("volume", o.Volume),
		zap.Strings("replicas", r.Replicas))
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(r.AcquireTimeout, 30*time.Second))
	defer cancel()
	fc := followerConfig(o.Volume, r, obs, log)
	if fc.Progress = r.Progress; fc.Progress == nil {
		fc.Progress = ProgressFor(os.Stderr, log)
	}
	f, snap, err := replication.OpenFollower(ctx, fc)
	if err != nil {
		return nil, fmt.Errorf("volume %s: loading it to follow: %w", o.Volume, err)
	}
	lsn, inodes := snap.LSN, len(snap.Inodes)
	v, err := Mount(o, &fsactor.DiscardSink{}, snap, log)
	if err != nil {
		f.Close()
		return nil, err
	}
	fv := &FollowerVolume{Volume: v, r: r, obs: obs}
	v.beforeUnmount = fv.stopFollowing
	fv.follow(f)
	st := f.Status()
	log.Info("follower serving", zap.String("volume", o.Volume), zap.String("source", st.Replica),
		zap.Uint64("term", st.Term), zap.Uint64("lsn", lsn), zap.Int("inodes", inodes))
	releaseRestored()
	return fv, nil
}

// followerConfig is the replication side of following o's volume.
func followerConfig(volume string, r ReplicationOptions, obs *followObserver, log *zap.Logger) replication.FollowerConfig {
	return replication.FollowerConfig{Volume: volume, NodeID: r.NodeID, Replicas: r.Replicas, Creds: r.Creds,
		Log: log.Named("replication"), Observer: obs}
}

// follow runs f on the actor until it is closed.
func (fv *FollowerVolume) follow(f *replication.Follower) {
	fv.mu.Lock()
	fv.follower, fv.state = f, ""
	fv.mu.Unlock()
	go f.Run(fv.Server())
}

// stopFollowing closes the stream for good (before an unmount: no record
// is applied while the mount goes away). A promoted volume has none.
func (fv *FollowerVolume) stopFollowing() {
	fv.mu.Lock()
	f, cancel, done := fv.follower, fv.resumeCancel, fv.resumeDone
	fv.follower, fv.stopped = nil, true
	if fv.primary == nil {
		fv.state = "stopped"
	}
	fv.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	if f != nil {
		f.Close()
	}
}

// Close ends replication after the volume stopped serving (Done): the
// follower's stream, or, once promoted, the primary's (ReplicatedVolume.Close).
func (fv *FollowerVolume) Close(drain time.Duration) {
	fv.stopFollowing()
	// A promotion in progress ends first (bounded by the acquire
	// timeout), so the primary it made is closed here too.
	fv.promoting.Lock()
	rv := fv.promoted()
	fv.promoting.Unlock()
	if rv != nil {
		rv.Close(drain)
	}
}

// promoted is the primary the volume became, or nil.
func (fv *FollowerVolume) promoted() *ReplicatedVolume {
	fv.mu.Lock()
	defer fv.mu.Unlock()
	return fv.primary
}

// Follower is the stream being applied (nil while none is, and once
// promoted).
func (fv *FollowerVolume) Follower() *replication.Follower {
	fv.mu.Lock()
	defer fv.mu.Unlock()
	return fv.follower
}

// Primary is the replication side of the volume once promoted, else nil.
func (fv *FollowerVolume) Primary() *replication.Primary {
	if rv := fv.promoted(); rv != nil {
		return rv.primary
	}
	return nil
}

// Promote makes this node the volume's primary without an unmount: it
// stops following, takes a new term from a quorum of the replicas
// (replication.OpenPrimary: the old primary is fenced; its recovery loads
// the most advanced replica's state), hands the actor that state and a
// sink shipping its records (fsactor Server.Promote: open files stay
// open), and serves the volume as a primary. If the term or the recovery
// fails, the volume goes on following (read-only) and the error says why.
// ctx bounds the term and the recovery, as r.AcquireTimeout does.
func (fv *FollowerVolume) Promote(ctx context.Context) (admin.PromoteResult, error) {
	fv.promoting.Lock()
	defer fv.promoting.Unlock()
	name := fv.name()
	if err := fv.startPromotion(); err != nil {
		return admin.PromoteResult{}, err
	}
	fv.log.Info("promoting the follower: taking a new term", zap.String("volume", name))
	p, snap, err := openPrimary(ctx, fv.opts, fv.r, fv.log)
	if err == nil {
		if err = fv.Server().Promote(ctx, NewReplSink(p), snap); err != nil {
			p.Close()
			err = fmt.Errorf("handing the actor the recovered state: %w", err)
		}
	}
	if err != nil {
		err = fmt.Errorf("volume %s: promotion failed, the volume goes on following (read-only): %w", name, err)
		fv.log.Error("promotion failed", zap.Error(err))
		fv.resume(err)
		return admin.PromoteResult{}, err
	}
	rv := newReplicatedVolume(fv.Volume, p, fv.r)
	fv.mu.Lock()
	fv.primary, fv.state = rv, ""
	fv.mu.Unlock()
	fv.log.Info("promoted: primary serving", zap.String("volume", name), zap.Uint64("term", p.Term()),
		zap.Uint64("lsn", snap.LSN), zap.Int("inodes", len(snap.Inodes)))
	return admin.PromoteResult{Volume: name, Dir: fv.Dir(), Term: p.Term(), LSN: snap.LSN}, nil
}

func (fv *FollowerVolume) promote(ctx context.Context) (admin.PromoteResult, error) {
	// The promotion is bound by the acquire timeout, not by the request:
	// a client going away half-way must not leave it half done.
	return fv.Promote(context.WithoutCancel(ctx))
}

// startPromotion checks the volume can be promoted and stops its
// follower (or the resume that would make one).
func (fv *FollowerVolume) startPromotion() error {
	select {
	case <-fv.Done():
		return fmt.Errorf("volume %s: not serving any more (unmounted)", fv.name())
	default:
	}
	fv.mu.Lock()
	f, cancel, done := fv.follower, fv.resumeCancel, fv.resumeDone
	switch {
	case fv.primary != nil:
		fv.mu.Unlock()
		return fmt.Errorf("volume %s: %w: it was promoted already; this node is its primary", fv.name(), admin.ErrNotFollower)
	case fv.stopped:
		fv.mu.Unlock()
		return fmt.Errorf("volume %s: stopping: it can no longer be promoted", fv.name())
	}
	fv.follower, fv.state = nil, "promoting"
	fv.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	if f != nil {
		f.Close() // after it nothing is applied: the actor's state is ours
	}
	return nil
}

// resume follows again after a failed promotion, in the background: a
// new snapshot (not older than what the mount shows) and a new stream,
// retried until it works or the volume stops.
func (fv *FollowerVolume) resume(why error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	fv.mu.Lock()
	if fv.stopped {
		fv.mu.Unlock()
		cancel()
		return
	}
	fv.state, fv.lastErr = "resuming", why.Error()
	fv.resumeCancel, fv.resumeDone = cancel, done
	fv.mu.Unlock()
	go func() {
		defer close(done)
		f, err := fv.reopen(ctx)
		fv.mu.Lock()
		defer fv.mu.Unlock()
		fv.resumeCancel, fv.resumeDone = nil, nil
		if err != nil {
			if !fv.stopped {
				fv.lastErr = err.Error()
			}
			return
		}
		if fv.stopped || ctx.Err() != nil {
			f.Close()
			return
		}
		fv.follower, fv.state = f, ""
		go f.Run(fv.Server())
	}()
}

// reopen fetches a snapshot at least as advanced as what the actor shows
// and hands it over (Server.Resync): a follower never goes back.
func (fv *FollowerVolume) reopen(ctx context.Context) (*replication.Follower, error) {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval = 100*time.Millisecond, 5*time.Second
	for {
		f, snap, err := replication.OpenFollower(ctx, followerConfig(fv.name(), fv.r, fv.obs, fv.log))
		if err == nil && snap.LSN >= fv.Server().AppliedLSN() {
			if err = fv.Server().Resync(ctx, snap); err == nil {
				fv.log.Info("following again after the failed promotion", zap.String("volume", fv.name()), zap.Uint64("lsn", snap.LSN))
				return f, nil
			}
		} else if err == nil {
			err = fmt.Errorf("the most advanced replica has lsn %d, the mount shows %d", snap.LSN, fv.Server().AppliedLSN())
		}
		if f != nil {
			f.Close()
		}
		fv.log.Warn("could not follow again yet; retrying", zap.String("volume", fv.name()), zap.Error(err))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(bo.NextBackOff()):
		}
	}
}

// followObserver passes a follower's measures to the metrics and keeps
// the delay of the last batch applied for the status.
type followObserver struct {
	m       *metrics.Follower
	lastLag atomic.Int64 // time.Duration
}

// FollowApplied implements replication.FollowerObserver.
func (o *followObserver) FollowApplied(volume string, records int, lagRecords uint64, lag time.Duration) {
	o.lastLag.Store(int64(lag))
	o.m.FollowApplied(volume, records, lagRecords, lag)
}

// FollowResynced implements replication.FollowerObserver.
func (o *followObserver) FollowResynced(volume string, lsn uint64) { o.m.FollowResynced(volume, lsn) }
