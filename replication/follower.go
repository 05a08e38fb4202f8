package replication

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	pb "github.com/spoolfs/spoolfs/proto"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// FollowerConfig describes the volume a Follower follows and where from.
type FollowerConfig struct {
	// NodeID names the follower in its Watch requests (default
	// "follower"); over mTLS it must be its certificate's node id, which
	// replicas check it against (and against their follow allowlists).
	Volume, NodeID string
	Replicas       []string                         // host:port
	Creds          credentials.TransportCredentials // nil: plaintext
	Log            *zap.Logger
	Observer       FollowerObserver // optional; lag and resyncs
	// Progress, when set, is told how OpenFollower's snapshot loads, as
	// PrimaryConfig.Progress is told of a recovery: Phase "fetch" (per
	// replica tried; counts against the snapshot header's totals), then
	// "done" with the snapshot's inodes and bytes. Called from
	// OpenFollower's goroutine, one call at a time; not during Run's
	// resyncs (those happen in the background, where a progress bar has
	// no terminal to draw on: logs and FollowResynced tell of them).
	Progress func(Progress)

	// Tuning; zero takes the default.
	CallTimeout time.Duration // a Status question to a replica (default 2 s)
	MinBackoff  time.Duration // first wait between attempts (default 50 ms)
	MaxBackoff  time.Duration // longest wait between attempts (default 1 s)
	// DeadAfter: a Watch stream silent this long (no records, no
	// heartbeat) has a dead source (default 3 × WatchHeartbeat).
	DeadAfter   time.Duration
	DialOptions []grpc.DialOption // added to DialOptions() (tests)
}

func (c FollowerConfig) withDefaults() (FollowerConfig, error) {
	if !volumeNameRE.MatchString(c.Volume) {
		return c, fmt.Errorf("replication: follower: volume name %q: want 1-128 of [A-Za-z0-9._-]", c.Volume)
	}
	if len(c.Replicas) == 0 {
		return c, errors.New("replication: follower: replicas: none given")
	}
	setDefault(&c.CallTimeout, 2*time.Second)
	setDefault(&c.MinBackoff, 50*time.Millisecond)
	setDefault(&c.MaxBackoff, time.Second)
	setDefault(&c.DeadAfter, 3*WatchHeartbeat)
	if c.NodeID == "" {
		c.NodeID = "follower"
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	if c.Observer == nil {
		c.Observer = nopFollowerObserver{}
	}
	return c, nil
}

// FollowerObserver is told what a follower measures (node turns it into
// metrics, internal/metrics). Called from the follower's goroutine (Run):
// it must not block.
type FollowerObserver interface {
	// FollowApplied: records were applied to the target. lagRecords is
	// how many records the source replica held past them when they were
	// sent; lag is the time since the oldest of them was made durable on
	// the source (by the source's clock; 0 when unknown).
	FollowApplied(volume string, records int, lagRecords uint64, lag time.Duration)
	// FollowResynced: the target's state was replaced by a snapshot at lsn.
	FollowResynced(volume string, lsn uint64)
}

type nopFollowerObserver struct{}

func (nopFollowerObserver) FollowApplied(string, int, uint64, time.Duration) {}
func (nopFollowerObserver) FollowResynced(string, uint64)                    {}

// FollowTarget is what a follower applies to: *fsactor.Server satisfies
// it. ApplyRecords gets records in lsn order, the first one the target's
// lsn + 1; Resync replaces the target's state by a snapshot not older
// than anything it was handed. An error from either (but a canceled
// context) makes the follower load a snapshot and Resync.
type FollowTarget interface {
	ApplyRecords(ctx context.Context, recs []Record) error
	Resync(ctx context.Context, snap *Snapshot) error
}

// FollowerStatus is what a follower reports (spoolfs status, metrics).
type FollowerStatus struct {
	Volume      string
	Replica     string    // the current source (host:port; "" before the first)
	Connected   bool      // a Watch stream with it is up
	Term, LSN   uint64    // the position applied: the last record's term and lsn (or the snapshot's)
	SourceLSN   uint64    // the source replica's lsn as last heard
	LastApplied time.Time // when records or a snapshot were last applied
	Resyncs     uint64    // snapshots loaded by Run
	Reconnects  uint64    // Watch streams that ended other than by Close or a resync
	Err         error     // why the last stream or resync ended, nil while streaming
}

// Follower follows a volume from its replicas: OpenFollower loads a
// snapshot, Run applies the records that follow it to a FollowTarget.
type Follower struct {
	cfg     FollowerConfig
	log     *zap.Logger
	conns   []*grpc.ClientConn
	clients []pb.ReplicaClient

	ctx     context.Context
	cancel  context.CancelFunc
	started atomic.Bool
	runDone chan struct{} // closed when Run returns
	once    sync.Once

	// The position applied, and the position a resync must reach (after
	// a failed apply the target holds something in between). Written by
	// Run's goroutine only, read through status.
	term, lsn           uint64
	floorTerm, floorLSN uint64
	src                 int // the current source (index in cfg.Replicas), -1: none
	// opening: OpenFollower is loading the first snapshot (fetch reports
	// cfg.Progress). Written before Run starts only.
	opening bool

	mu sync.Mutex
	st FollowerStatus
}

// OpenFollower fetches the volume's snapshot from the most advanced
// reachable replica (highest (last_term, lsn) among those that answer
// Status within CallTimeout, trying the next on failure, with backoff
// until ctx ends) and returns it; nothing is followed yet.
func OpenFollower(ctx context.Context, cfg FollowerConfig) (*Follower, *Snapshot, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, nil, err
	}
	conns, err := dialAll(PrimaryConfig{Replicas: cfg.Replicas, Creds: cfg.Creds, DialOptions: cfg.DialOptions})
	if err != nil {
		return nil, nil, err
	}
	f := &Follower{cfg: cfg, log: cfg.Log.With(zap.String("volume", cfg.Volume), zap.String("role", "follower")),
		conns: conns, runDone: make(chan struct{}), src: -1, st: FollowerStatus{Volume: cfg.Volume}}
	for _, c := range conns {
		f.clients = append(f.clients, pb.NewReplicaClient(c))
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	snap, err := f.openSnapshot(ctx)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, snap, nil
}

// openSnapshot loads the first snapshot, with backoff until ctx ends.
func (f *Follower) openSnapshot(ctx context.Context) (*Snapshot, error) {
	bo := f.schedule()
	f.opening = true
	defer func() { f.opening = false }()
	for {
		snap, term, err := f.fetchBest(ctx, 0, 0)
		if err == nil {
			f.setApplied(term, snap.LSN, false)
			if f.cfg.Progress != nil {
				f.cfg.Progress(Progress{Phase: "done", Term: term, Inodes: uint64(len(snap.Inodes)), BytesTotal: snapDataBytes(snap)})
			}
			f.log.Info("follower loaded its snapshot", zap.String("replica", f.cfg.Replicas[f.src]),
				zap.Uint64("lsn", f.lsn), zap.Uint64("term", f.term), zap.Int("inodes", len(snap.Inodes)))
			return snap, nil
		}
		if status.Code(err) == codes.PermissionDenied {
			return nil, fmt.Errorf("replication: follow volume %q: %w", f.cfg.Volume, err)
		}
		select {
		case <-time.After(bo.NextBackOff()):
		case <-ctx.Done():
			return nil, fmt.Errorf("replication: follow volume %q: no snapshot from %v: %w (last: %v)", f.cfg.Volume, f.cfg.Replicas, ctx.Err(), err)
		}
	}
}

func (f *Follower) schedule() *backoff.ExponentialBackOff {
	return PrimaryConfig{MinBackoff: f.cfg.MinBackoff, MaxBackoff: f.cfg.MaxBackoff}.retrySchedule(linkJitter)
}

// Run follows from the snapshot's position until Close: Watch streams,
// reconnects, switches replicas, and loads a snapshot when the replica
// can no longer stream from the follower's position. It never hands
// target a state older (by (last_term, lsn)) than one already handed.
// Call it once; it returns when Close is called.
func (f *Follower) Run(target FollowTarget) {
	if !f.started.CompareAndSwap(false, true) {
		return
	}
	defer close(f.runDone)
	bo := f.schedule()
	exclude, needResync := -1, false
	for f.ctx.Err() == nil {
		var progressed bool
		var err error
		if needResync {
			if err = f.resync(f.src, target); err == nil {
				needResync = false
				bo.Reset()
				continue
			}
			f.log.Warn("follower resync failed, retrying", zap.Error(err))
		} else {
			progressed, exclude, needResync, err = f.follow(exclude, target)
			if needResync {
				f.setStatus(func(st *FollowerStatus) { st.Connected, st.Err = false, err })
				continue
			}
		}
		if f.ctx.Err() != nil {
			return
		}
		f.setStatus(func(st *FollowerStatus) { st.Connected, st.Err = false, err })
		if progressed {
			bo.Reset()
		}
		select {
		case <-time.After(bo.NextBackOff()):
		case <-f.ctx.Done():
			return
		}
	}
}

// follow runs one Watch session on the best source (not exclude, unless
// alone) and classifies its end: the source to avoid next, or a resync.
func (f *Follower) follow(exclude int, target FollowTarget) (progressed bool, avoid int, resync bool, err error) {
	src := f.pickSource(exclude)
	if src < 0 {
		return false, -1, false, errors.New("no replica answered with the volume")
	}
	progressed, err = f.session(src, target)
	if f.ctx.Err() != nil {
		return progressed, -1, false, err
	}
	if IsWatchResync(err) || errors.Is(err, errApplyFailed) {
		f.log.Info("follower needs a snapshot", zap.String("replica", f.cfg.Replicas[src]), zap.Error(err))
		return progressed, -1, true, err
	}
	f.setStatus(func(st *FollowerStatus) { st.Reconnects++ })
	f.log.Info("follower stream ended, switching replica", zap.String("replica", f.cfg.Replicas[src]), zap.Error(err))
	return progressed, src, false, err
}

// Close stops Run and waits for it; after Close returns nothing is
// applied to the target. Safe to call more than once, and without Run.
func (f *Follower) Close() {
	f.once.Do(func() {
		f.cancel()
		if f.started.Swap(true) { // Run started: wait for it; else it never will
			<-f.runDone
		}
		for _, c := range f.conns {
			_ = c.Close()
		}
	})
}

// Status reports where the follower stands; safe from any goroutine. A
// position (and its resync) is reported once the target's ApplyRecords or
// Resync returned, never when handed over: it may lag what the target
// shows by the call in progress, never lead it.
func (f *Follower) Status() FollowerStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *Follower) setStatus(fn func(*FollowerStatus)) {
	f.mu.Lock()
	fn(&f.st)
	f.mu.Unlock()
}

// setApplied records a new applied position (Run's goroutine); resynced
// counts a snapshot loaded by Run in the same status update, so a reader
// never sees the snapshot's position without its resync.
func (f *Follower) setApplied(term, lsn uint64, resynced bool) {
	if invariants && (term < f.term || (term == f.term && lsn < f.lsn)) {
		panic(fmt.Sprintf("follower: applied position goes back from lsn %d of term %d to lsn %d of term %d", f.lsn, f.term, lsn, term))
	}
	f.term, f.lsn = term, lsn
	now := time.Now()
	f.setStatus(func(st *FollowerStatus) {
		st.Term, st.LSN, st.LastApplied = term, lsn, now
		if resynced {
			st.Resyncs++
		}
	})
}

// notBefore says whether position (term, lsn) is at or past (t0, l0).
func notBefore(term, lsn, t0, l0 uint64) bool {
	return term > t0 || (term == t0 && lsn >= l0)
}
