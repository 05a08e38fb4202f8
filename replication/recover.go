package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	pb "github.com/spoolfs/spoolfs/proto"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// OpenPrimary makes this node the primary of cfg.Volume: it acquires term
// T = highest seen + 1 from W replicas, loads the most advanced state of
// the granting replicas (last term, then lsn), installs it on other
// granting replicas under T until W hold it (spread), and returns the Primary and
// that state, which the actor must start from (for a volume no replica
// holds, a snapshot with only the root directory). It retries with backoff
// until cfg.AcquireTimeout; the error then says what each replica answered.
func OpenPrimary(ctx context.Context, cfg PrimaryConfig) (*Primary, *Snapshot, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, nil, err
	}
	conns, err := dialAll(cfg)
	if err != nil {
		return nil, nil, err
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, cfg.AcquireTimeout)
	defer cancel()
	r := &recovery{cfg: cfg, log: cfg.Log.With(zap.String("volume", cfg.Volume))}
	for _, c := range conns {
		r.clients = append(r.clients, pb.NewReplicaClient(c))
	}
	p, snap, err := r.run(ctx, conns)
	if err != nil {
		for _, c := range conns {
			_ = c.Close()
		}
		if parent.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) { // ours, not the caller's
			err = fmt.Errorf("%w of %s: %w", ErrAcquireTimeout, cfg.AcquireTimeout, err)
		}
		return nil, nil, err
	}
	return p, snap, nil
}

// DialOptions are the defaults a primary dials replicas with: message
// size bounds, fast reconnects, keepalive.
func DialOptions() []grpc.DialOption {
	bo := backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second}
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize), grpc.MaxCallSendMsgSize(maxMsgSize)),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: 2 * time.Second}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
		grpc.WithInitialWindowSize(flowWindow),
		grpc.WithInitialConnWindowSize(flowWindow),
	}
}

func dialAll(cfg PrimaryConfig) ([]*grpc.ClientConn, error) {
	opts := DialOptions()
	if cfg.Creds != nil {
		opts = append(opts, grpc.WithTransportCredentials(cfg.Creds))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	opts = append(opts, cfg.DialOptions...)
	var conns []*grpc.ClientConn
	for _, addr := range cfg.Replicas {
		c, err := grpc.NewClient(addr, opts...)
		if err != nil {
			for _, o := range conns {
				_ = o.Close()
			}
			return nil, fmt.Errorf("replication: replica %q: %w", addr, err)
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// recovery is OpenPrimary's work: acquire, choose, fetch, install.
type recovery struct {
	cfg     PrimaryConfig
	log     *zap.Logger
	clients []pb.ReplicaClient
	progMu  sync.Mutex
}

func (r *recovery) progress(p Progress) {
	if r.cfg.Progress == nil {
		return
	}
	r.progMu.Lock()
	defer r.progMu.Unlock()
	r.cfg.Progress(p)
}

// answer is one replica's reply to an Acquire.
type answer struct {
	resp *pb.AcquireResponse
	err  error
}

func (a answer) String() string {
	switch {
	case a.err != nil:
		return "error: " + a.err.Error()
	case a.resp.Granted:
		return fmt.Sprintf("granted (at lsn %d of term %d)", a.resp.Lsn, a.resp.LastTerm)
	default:
		return fmt.Sprintf("refused (holds term %d of %q)", a.resp.AcceptedTerm, a.resp.Holder)
	}
}

func (r *recovery) run(ctx context.Context, conns []*grpc.ClientConn) (*Primary, *Snapshot, error) {
	term, answers, err := r.acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	snap, baseTerm, holders, err := r.recoverState(ctx, term, answers)
	if err != nil {
		return nil, nil, err
	}
	r.progress(Progress{Phase: "done", Term: term, Inodes: uint64(len(snap.Inodes)), BytesTotal: snapDataBytes(snap)})
	r.log.Info("primary ready", zap.Uint64("term", term), zap.Uint64("lsn", snap.LSN), zap.Uint64("base_term", baseTerm),
		zap.Int("inodes", len(snap.Inodes)))
	return newPrimary(r.cfg, conns, term, baseTerm, snap.LSN, holders), snap, nil
}

// acquire asks every replica for T = highest seen + 1 until W grant it.
// A first round with term 0 (never granted) learns the highest term. A
// replica that granted T keeps granting it to this holder, so T only grows
// when another node holds T or more.
func (r *recovery) acquire(ctx context.Context) (uint64, []answer, error) {
	var highest uint64
	for _, a := range r.acquireRound(ctx, 0) {
		if a.err == nil {
			highest = max(highest, a.resp.AcceptedTerm)
		}
	}
	term := highest + 1
	bo := r.cfg.retrySchedule(0)
	for {
		r.progress(Progress{Phase: "acquire", Term: term})
		answers := r.acquireRound(ctx, term)
		granted, skewed := 0, 0
		for i, a := range answers {
			r.log.Info("acquire answer", zap.Uint64("term", term), zap.String("replica", r.cfg.Replicas[i]), zap.Stringer("answer", a))
			switch {
			case isVersionRefusal(a.err):
				skewed++
			case a.err != nil:
			case a.resp.Granted:
				granted++
			default:
				highest = max(highest, a.resp.AcceptedTerm)
			}
		}
		if granted >= r.cfg.W {
			return term, answers, nil
		}
		if len(answers)-skewed < r.cfg.W { // no retry changes a version
			return 0, nil, fmt.Errorf("%w: volume %q: %d of %d replicas speak another version, need %d: %s",
				ErrProtocolVersion, r.cfg.Volume, skewed, len(answers), r.cfg.W, r.summary(answers))
		}
		term = max(term, highest+1)
		summary := r.summary(answers)
		r.log.Warn("term not acquired, retrying", zap.Uint64("term", term), zap.Int("granted", granted), zap.Int("w", r.cfg.W), zap.String("answers", summary))
		select {
		case <-time.After(bo.NextBackOff()):
		case <-ctx.Done():
			return 0, nil, fmt.Errorf("%w: acquire term %d for volume %q: %d of %d granted, need %d: %s",
				ErrNoQuorum, term, r.cfg.Volume, granted, len(answers), r.cfg.W, summary)
		}
	}
}

// summary says what each replica answered; one that could not be reached
// (codes.Unavailable: refused, no route, TLS handshake) gets the question
// an operator should ask first.
func (r *recovery) summary(answers []answer) string {
	parts := make([]string, len(answers))
	for i, a := range answers {
		addr := r.cfg.Replicas[i]
		parts[i] = addr + ": " + a.String()
		if a.err != nil && status.Code(a.err) == codes.Unavailable {
			parts[i] = fmt.Sprintf("%s: unreachable (%s): is `spoolfs replica` running at %s?", addr, status.Convert(a.err).Message(), addr)
		}
	}
	return strings.Join(parts, "; ")
}

func (r *recovery) acquireRound(ctx context.Context, term uint64) []answer {
	answers := make([]answer, len(r.clients))
	var wg sync.WaitGroup
	for i, c := range r.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
			defer cancel()
			resp, err := c.Acquire(cctx, &pb.AcquireRequest{Volume: r.cfg.Volume, Term: term, NodeId: r.cfg.holder,
				ProtocolVersion: r.cfg.versions.speaks()})
			if err == nil {
				err = r.cfg.versions.check(resp.ProtocolVersion, "replica "+r.cfg.Replicas[i])
			}
			answers[i] = answer{resp: resp, err: err}
		}()
	}
	wg.Wait()
	return answers
}

// recoverState loads the most advanced granting replica's state and makes
// W replicas hold it. holders[i] is true for the replicas that do.
func (r *recovery) recoverState(ctx context.Context, term uint64, answers []answer) (*Snapshot, uint64, []bool, error) {
	best := -1
	for i, a := range answers {
		if a.err != nil || !a.resp.Granted || !a.resp.Initialized {
			continue
		}
		if best < 0 || ahead(a.resp, answers[best].resp) {
			best = i
		}
	}
	var snap *Snapshot
	var baseTerm uint64
	if best < 0 {
		snap, baseTerm = r.newVolume(), term
		r.log.Info("new volume: no replica holds it yet")
	} else {
		var err error
		baseTerm = answers[best].resp.LastTerm
		if snap, err = r.fetchBest(ctx, answers, answers[best].resp); err != nil {
			return nil, 0, nil, err
		}
	}
	holders, err := r.spread(ctx, term, baseTerm, snap, answers)
	if invariants && err == nil {
		r.checkBase(answers, best, holders)
	}
	return snap, baseTerm, holders, err
}

// ahead compares positions: last term first, then lsn.
func ahead(a, b *pb.AcquireResponse) bool {
	if a.LastTerm != b.LastTerm {
		return a.LastTerm > b.LastTerm
	}
	return a.Lsn > b.Lsn
}

func samePos(a *pb.AcquireResponse, lastTerm, lsn uint64) bool {
	return a.Initialized && a.LastTerm == lastTerm && a.Lsn == lsn
}

func (r *recovery) newVolume() *Snapshot {
	root := r.cfg.Root
	perm := root.Mode & 0o7777
	if perm == 0 {
		perm = 0o755
	}
	now := time.Now().UnixNano()
	root.Mode, root.Nlink, root.Size, root.Rdev = modeDir|perm, 2, 0, 0
	root.Atime, root.Mtime, root.Ctime = now, now, now
	return &Snapshot{LSN: 0, NextIno: RootIno + 1, Inodes: []SnapInode{{Ino: RootIno, Attr: root}}}
}

// fetchBest fetches the state from a granting replica at the best
// position, trying each such replica, with backoff, until ctx ends.
func (r *recovery) fetchBest(ctx context.Context, answers []answer, best *pb.AcquireResponse) (*Snapshot, error) {
	bo := r.cfg.retrySchedule(0)
	for {
		var errs []string
		for i, a := range answers {
			if a.err != nil || !a.resp.Granted || !samePos(a.resp, best.LastTerm, best.Lsn) {
				continue
			}
			snap, err := r.fetch(ctx, i, best)
			if err == nil {
				return snap, nil
			}
			r.log.Warn("fetch failed", zap.String("replica", r.cfg.Replicas[i]), zap.Error(err))
			errs = append(errs, r.cfg.Replicas[i]+": "+err.Error())
		}
		select {
		case <-time.After(bo.NextBackOff()):
		case <-ctx.Done():
			return nil, fmt.Errorf("replication: fetch volume %q at lsn %d of term %d: %s: %w",
				r.cfg.Volume, best.Lsn, best.LastTerm, strings.Join(errs, "; "), ctx.Err())
		}
	}
}

func (r *recovery) fetch(ctx context.Context, i int, want *pb.AcquireResponse) (*Snapshot, error) {
	addr := r.cfg.Replicas[i]
	asm := &snapAssembler{lim: Limits{MaxFileSize: 1 << 40}.withDefaults()}
	asm.onData = func(inodes, bytes uint64) {
		r.progress(Progress{Phase: "fetch", Replica: addr, Inodes: inodes, InodesTotal: asm.hdr.Inodes, Bytes: bytes, BytesTotal: asm.hdr.Bytes})
	}
	req := &pb.FetchRequest{Volume: r.cfg.Volume, ProtocolVersion: r.cfg.versions.speaks()}
	if err := fetchInto(ctx, r.clients[i], req, asm); err != nil {
		return nil, err
	}
	hdr, snap, err := asm.finish()
	if err != nil {
		return nil, err
	}
	if hdr.LastTerm != want.LastTerm || hdr.Lsn != want.Lsn {
		return nil, fmt.Errorf("replica moved from lsn %d of term %d to lsn %d of term %d", want.Lsn, want.LastTerm, hdr.Lsn, hdr.LastTerm)
	}
	return checkSnapshot(snap, asm.lim)
}

// spread installs snap on the granting replicas that do not hold it,
// until at least W do. When W granting replicas are at the base's
// position already, it installs nothing: the promise needs W holders
// before serving (P4), not every replica, and a whole-volume install on a
// replica a few records behind took 17 s of a 1,000,000-file recovery.
// Such a replica is no holder: the primary's link for it catches it up
// after the primary serves, as it does any replica behind its log
// (stream.go, open: a resync from the actor's snapshot).
func (r *recovery) spread(ctx context.Context, term, baseTerm uint64, snap *Snapshot, answers []answer) ([]bool, error) {
	holders := make([]bool, len(answers))
	var targets []int
	for i, a := range answers {
		switch {
		case a.err != nil || !a.resp.Granted:
		case samePos(a.resp, baseTerm, snap.LSN):
			holders[i] = true
		default:
			targets = append(targets, i)
		}
	}
	if countTrue(holders) >= r.cfg.W {
		if len(targets) > 0 {
			r.log.Info("W replicas hold the base: the others catch up after the primary serves", zap.Int("holders", countTrue(holders)), zap.Int("behind", len(targets)))
		}
		return holders, nil
	}
	bo := r.cfg.retrySchedule(0)
	for {
		var err error
		if targets, err = r.installAll(ctx, term, baseTerm, snap, targets, holders); err != nil {
			return nil, err
		}
		n := countTrue(holders)
		if n >= r.cfg.W {
			return holders, nil
		}
		if len(targets) == 0 {
			return nil, fmt.Errorf("%w: volume %q: %d replicas hold the recovered state, need %d", ErrNoQuorum, r.cfg.Volume, n, r.cfg.W)
		}
		select {
		case <-time.After(bo.NextBackOff()):
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: volume %q: %d replicas hold the recovered state, need %d: %w", ErrNoQuorum, r.cfg.Volume, n, r.cfg.W, ctx.Err())
		}
	}
}

// installAll installs in parallel and returns the targets that failed;
// an error when a replica says a newer term exists.
func (r *recovery) installAll(ctx context.Context, term, baseTerm uint64, snap *Snapshot, targets []int, holders []bool) ([]int, error) {
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for k, i := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := r.cfg.Replicas[i]
			hdr := &pb.SnapshotHeader{Volume: r.cfg.Volume, Term: term, LastTerm: baseTerm, NodeId: r.cfg.holder,
				ProtocolVersion: r.cfg.versions.speaks()}
			total, bytes := uint64(len(snap.Inodes)), snapDataBytes(snap)
			errs[k] = installSnapshot(ctx, r.clients[i], hdr, snap, func(n, b uint64) {
				r.progress(Progress{Phase: "install", Replica: addr, Term: term, Inodes: n, InodesTotal: total, Bytes: b, BytesTotal: bytes})
			})
		}()
	}
	wg.Wait()
	var failed []int
	for k, i := range targets {
		if errs[k] != nil {
			r.log.Warn("install of the recovered state failed", zap.String("replica", r.cfg.Replicas[i]), zap.Error(errs[k]))
			if isFenced(errs[k]) {
				return nil, fmt.Errorf("%w: replica %s: %v", ErrFenced, r.cfg.Replicas[i], errs[k])
			}
			failed = append(failed, i)
			continue
		}
		holders[i] = true
	}
	return failed, nil
}

func countTrue(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}
