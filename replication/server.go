package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	pb "github.com/spoolfs/spoolfs/proto"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// ReplicaServer stores volumes for the primaries that push to it: the
// Replica gRPC service. Safe for concurrent use.
type ReplicaServer struct {
	pb.UnimplementedReplicaServer
	dir string // "" keeps volumes in memory (tests, fuzzing)
	log *zap.Logger
	lim Limits
	obs ReplicaObserver // told of every commit (WithObserver); never nil

	mu     sync.Mutex
	vols   map[string]*volume
	closed bool

	received atomic.Uint64 // records received on Ship streams (tests)
	streams  atomic.Int64  // Ship streams being served

	compactMin int64 // WithCompactMin; 0: DefaultCompactMin
	// Followers (watch.go): the bound of each volume's watch ring (0: no
	// Watch), who may follow which volume (nil: everyone), the Watch
	// streams being served, and whether CloseWatches was called (s.mu).
	watchBuffer int64
	heartbeat   time.Duration // WatchHeartbeat but in tests
	followAllow map[string]map[string]bool
	watchers    atomic.Int64
	watchClosed bool
	// versions: the protocol versions served (zero: this build's; tests
	// set others to play another release).
	versions versionRange
	// hookBeforeApply, when set, runs in the Ship applier before each
	// batch is collected (tests block it to build a big batch).
	hookBeforeApply atomic.Pointer[func()]
}

// volume is one volume on a replica. mu serialises batches, acquires,
// installs and snapshot reads.
type volume struct {
	name     string
	mu       sync.Mutex
	st       *volStore
	termPath string // "" in memory
	accepted uint64
	holder   string
	broken   error // set when storage failed or the server closed
	// termCh is closed when accepted rises (and replaced): Ship streams of
	// a lower term end at once with FENCED, so that an idle primary
	// learns that it was deposed without writing (ship.go, apply).
	// INVARIANT: never nil, never closed while held in the struct.
	termCh   chan struct{}
	received atomic.Uint64 // bytes of Ship and Install messages received
	// ring holds the records made durable lately, for Watch streams
	// (watchring.go); reset when the store opens or a snapshot is
	// installed. nil: Watch is off (WithWatchBuffer(0)).
	ring *watchRing

	// wroteTerm is the term the last commit or install was made under
	// (in memory: 0 after a restart; lateInstall).
	wroteTerm uint64

	// The highest lsn a batch ack reported and the term it was under.
	// Kept only by -tags invariants builds (invariant.go, R5).
	ackTerm, ackLSN uint64

	// After a storage failure the volume opens its store again when it is
	// next used (usable), spaced by backOff: a disk that was full works
	// again once space is freed, without a restart.
	path       string                      // the database file ("" in memory: no reopening)
	compactMin int64                       // for openVolStore
	cut        int64                       // the file's size at its last good fsync when it failed (-1: unknown)
	retryAt    time.Time                   // no reopening before
	reopenWait *backoff.ExponentialBackOff // the waits after failures: doubling from reopenMin to reopenMax; nil: start over
	log        *zap.Logger
}

// Bounds of the wait between attempts to open a failed volume's store
// again. Each attempt reads the whole file (a large volume costs CPU), and
// a disk that stays full fails each one: the wait doubles while it fails.
const (
	reopenMin = time.Second
	reopenMax = 30 * time.Second
)

// ShipStreams is the number of Ship streams being served: primaries
// pushing records to this replica.
func (s *ReplicaServer) ShipStreams() int { return int(s.streams.Load()) }

// ReplicaOption configures a ReplicaServer.
type ReplicaOption func(*ReplicaServer)

// WithCompactMin sets the file size below which a volume's database is
// never compacted (default DefaultCompactMin, 64 MiB); past it the file is
// rewritten whenever it has doubled.
func WithCompactMin(bytes int64) ReplicaOption {
	return func(s *ReplicaServer) { s.compactMin = bytes }
}

// WithLimits sets the bounds records and snapshots are held to.
func WithLimits(l Limits) ReplicaOption { return func(s *ReplicaServer) { s.lim = l.withDefaults() } }

// NewReplicaServer serves the volumes stored under dataDir (created if
// missing; "" keeps volumes in memory, for tests). Every volume found
// there is opened now, so a restarted replica resumes from its disk.
func NewReplicaServer(dataDir string, log *zap.Logger, opts ...ReplicaOption) (*ReplicaServer, error) {
	if log == nil {
		log = zap.NewNop()
	}
	s := &ReplicaServer{dir: dataDir, log: log, lim: Limits{}.withDefaults(), vols: make(map[string]*volume),
		obs: nopReplicaObserver{}, watchBuffer: DefaultWatchBuffer, heartbeat: WatchHeartbeat}
	for _, o := range opts {
		o(s)
	}
	if dataDir == "" {
		return s, nil
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, fmt.Errorf("replica data dir: %w", err)
	}
	names, err := filepath.Glob(filepath.Join(dataDir, "*.db"))
	if err != nil {
		return nil, fmt.Errorf("replica data dir: %w", err)
	}
	for _, n := range names {
		removeStaleInstalls(n)
		name := strings.TrimSuffix(filepath.Base(n), ".db")
		if _, err := s.volume(name, true); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// Register adds the Replica service to g, and the standard gRPC health
// service, which a primary's links probe to tell a replica that answers
// from a silent connection (probe.go). Create g with ServerOptions().
func (s *ReplicaServer) Register(g *grpc.Server) {
	pb.RegisterReplicaServer(g, s)
	grpc_health_v1.RegisterHealthServer(g, health.NewServer())
}

// ServerOptions are the gRPC server options a replica needs: message size
// bounds and keepalive. Add credentials (mTLS) to them.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxMsgSize),
		grpc.MaxSendMsgSize(maxMsgSize),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.InitialWindowSize(flowWindow),
		grpc.InitialConnWindowSize(flowWindow),
	}
}

// flowWindow is the HTTP/2 flow-control window of replication streams and
// connections, both ways. A fixed window this large turns off gRPC's
// bandwidth estimation (its PING frames) and means a WINDOW_UPDATE frame —
// one more write(2) and wake-up on each side — only every 16 MiB instead
// of every few records; the primary's own bound on what is in flight
// (maxInflightBytes) is what limits a stream.
const flowWindow = 64 << 20

// Close closes every volume; later calls answer Unavailable.
func (s *ReplicaServer) Close() error {
	s.mu.Lock()
	s.closed = true
	vols := s.vols
	s.vols = map[string]*volume{}
	s.mu.Unlock()
	for _, v := range vols {
		v.mu.Lock()
		if v.st != nil {
			v.st.close()
		}
		v.broken = errors.New("replica closed")
		v.path = "" // never reopened
		v.mu.Unlock()
		if v.ring != nil {
			v.ring.shut()
		}
	}
	return nil
}

var volumeNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// volume returns an open volume; create opens or creates its database,
// otherwise a volume that was never acquired is NotFound.
func (s *ReplicaServer) volume(name string, create bool) (*volume, error) {
	if !volumeNameRE.MatchString(name) {
		return nil, invalidf("volume name %q: want 1-128 of [A-Za-z0-9._-], not starting with . _ or -", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, status.Error(codes.Unavailable, "replica closed")
	}
	if v := s.vols[name]; v != nil {
		return v, nil
	}
	if !create && !s.exists(name) {
		return nil, status.Errorf(codes.NotFound, "volume %q not on this replica: acquire it first", name)
	}
	v, err := s.openVolume(name)
	if err != nil {
		s.log.Error("open volume", zap.String("volume", name), zap.Error(err))
		return nil, status.Errorf(codes.Internal, "open volume %q: %v", name, err)
	}
	s.vols[name] = v
	return v, nil
}

func (s *ReplicaServer) exists(name string) bool {
	if s.dir == "" {
		return false
	}
	_, err := os.Stat(filepath.Join(s.dir, name+".db"))
	return err == nil
}

func (s *ReplicaServer) openVolume(name string) (*volume, error) {
	v := &volume{name: name, compactMin: s.compactMin, log: s.log.With(zap.String("volume", name)), termCh: make(chan struct{})}
	dbPath := ""
	if s.dir != "" {
		dbPath = filepath.Join(s.dir, name+".db")
		v.termPath = filepath.Join(s.dir, name+".term")
		tf, err := readTermFile(v.termPath)
		if err != nil {
			return nil, err
		}
		v.accepted, v.holder = tf.Term, tf.Holder
	}
	st, err := openVolStore(dbPath, s.compactMin, v.log)
	if err != nil {
		return nil, err
	}
	v.st, v.path = st, dbPath
	if s.watchBuffer > 0 {
		v.ring = newWatchRing(s.watchBuffer, st.meta.LSN, st.meta.LastTerm)
	}
	s.log.Info("volume opened", zap.String("volume", name), zap.Uint64("accepted_term", v.accepted),
		zap.Uint64("last_term", st.meta.LastTerm), zap.Uint64("lsn", st.meta.LSN))
	return v, nil
}

// usable reports why the volume cannot be used (caller holds v.mu). A
// volume whose storage failed first tries to open its store again.
func (v *volume) usable() error {
	if v.broken != nil && v.path != "" && !time.Now().Before(v.retryAt) {
		if err := v.reopen(); err != nil {
			v.broken = err
			next := v.backOff()
			v.log.Warn("replica storage still failing", zap.Error(err), zap.Duration("next_try_in", next))
		} else {
			v.log.Info("replica storage works again: volume usable", zap.Uint64("lsn", v.st.meta.LSN))
			v.broken = nil
		}
	}
	if v.broken != nil {
		return status.Errorf(codes.Unavailable, "volume %q: %v", v.name, v.broken)
	}
	return nil
}

// backOff sets when the store may be opened again and returns how long
// from now: reopenMin after the first failure, doubling for each next one
// up to reopenMax (cenkalti/backoff, no jitter: one timer per volume). A
// volume that commits again (its first batch after the reopening) starts
// over from reopenMin.
func (v *volume) backOff() time.Duration {
	if v.reopenWait == nil {
		v.reopenWait = &backoff.ExponentialBackOff{InitialInterval: reopenMin, Multiplier: 2, MaxInterval: reopenMax}
	}
	d := v.reopenWait.NextBackOff()
	v.retryAt = time.Now().Add(d)
	return d
}

// reopen opens the store of a volume whose storage failed. The open cuts
// the file back to its last good fsync (the marker fail left); if the
// marker could not be written, to the size fail remembered.
func (v *volume) reopen() error {
	if _, err := os.Stat(v.path + failedSuffix); errors.Is(err, os.ErrNotExist) && v.cut >= 0 {
		if err := cutFile(v.path, v.cut, v.log); err != nil {
			return err
		}
	}
	st, err := openVolStore(v.path, v.compactMin, v.log)
	if err != nil {
		return err
	}
	v.st, v.cut = st, -1
	if v.ring != nil {
		v.ring.reset(st.meta.LSN, st.meta.LastTerm)
	}
	return nil
}

// fail marks the volume unusable after a storage error (caller holds
// v.mu): its state on disk is no longer known. It is tried again when next
// used, from what its last good fsync made durable (usable).
func (v *volume) fail(log *zap.Logger, err error) error {
	log.Error("replica storage failed: volume unusable until its store opens again", zap.String("volume", v.name), zap.Error(err))
	v.broken = err
	v.cut = v.st.durableSize
	v.st.markFailed()
	v.st.close()
	v.backOff()
	return status.Errorf(codes.Internal, "volume %q: storage failed: %v", v.name, err)
}

// Acquire implements pb.ReplicaServer: a term above the accepted one is
// persisted (term file) before the grant is answered.
func (s *ReplicaServer) Acquire(ctx context.Context, req *pb.AcquireRequest) (*pb.AcquireResponse, error) {
	if req.NodeId == "" {
		return nil, invalidf("acquire: no node id")
	}
	if err := s.versions.check(req.ProtocolVersion, "primary "+req.NodeId); err != nil {
		return nil, err
	}
	if err := checkClaim(ctx, req.NodeId); err != nil {
		return nil, err
	}
	v, err := s.volume(req.Volume, true)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.usable(); err != nil {
		return nil, err
	}
	// The holder that acquired the accepted term may ask again (a retry
	// after a lost answer): granted, nothing changes.
	granted := req.Term == v.accepted && req.NodeId != "" && req.NodeId == v.holder
	before := v.accepted
	if req.Term > v.accepted {
		if v.termPath != "" {
			if err := writeTermFile(v.termPath, termFile{Term: req.Term, Holder: req.NodeId}); err != nil {
				return nil, v.fail(s.log, err)
			}
		}
		s.log.Info("term acquired", zap.String("volume", v.name), zap.Uint64("term", req.Term),
			zap.Uint64("previous", v.accepted), zap.String("node", req.NodeId))
		v.accepted, v.holder, granted = req.Term, req.NodeId, true
		close(v.termCh) // the streams of lower terms end (shipSession.apply)
		v.termCh = make(chan struct{})
	}
	if invariants && granted {
		v.checkGrant(before, req.Term, req.NodeId)
	}
	m := v.st.meta
	return &pb.AcquireResponse{Granted: granted, AcceptedTerm: v.accepted, Holder: v.holder,
		LastTerm: m.LastTerm, Lsn: m.LSN, Initialized: m.Initialized, ProtocolVersion: peerVersion(req.ProtocolVersion)}, nil
}

// Fetch implements pb.ReplicaServer: the volume's whole state.
func (s *ReplicaServer) Fetch(req *pb.FetchRequest, stream pb.Replica_FetchServer) error {
	if err := s.versions.check(req.ProtocolVersion, "a fetch"); err != nil {
		return err
	}
	v, err := s.volume(req.Volume, false)
	if err != nil {
		return err
	}
	if err := s.mayFollow(stream.Context(), v); err != nil {
		return err
	}
	hdr, fz, err := v.freezeForFetch(req)
	if err != nil {
		return err
	}
	if err := sendInodes(hdr, fz.eachInode, stream.Send, nil); err != nil {
		if _, ok := status.FromError(err); ok {
			return err
		}
		return status.Errorf(codes.Internal, "fetch %q: %v", req.Volume, err)
	}
	return nil
}

// freezeForFetch reads the volume's position and keys under its lock; the
// snapshot is then sent from them without it (frozen.go), so that a slow
// reader does not hold the volume's commits.
func (v *volume) freezeForFetch(req *pb.FetchRequest) (*pb.SnapshotHeader, *frozenVolume, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.usable(); err != nil {
		return nil, nil, err
	}
	m := v.st.meta
	if !m.Initialized {
		return nil, nil, preconditionf("volume %q not initialized on this replica", req.Volume)
	}
	inodes, bytes := v.st.counts()
	fz, err := v.st.freeze()
	if err != nil {
		return nil, nil, status.Errorf(codes.Internal, "fetch %q: %v", req.Volume, err)
	}
	hdr := &pb.SnapshotHeader{Volume: req.Volume, Term: v.accepted, LastTerm: m.LastTerm,
		Lsn: m.LSN, NextIno: m.NextIno, Inodes: inodes, Bytes: bytes, ProtocolVersion: peerVersion(req.ProtocolVersion)}
	return hdr, fz, nil
}

// Install implements pb.ReplicaServer: a full resync under a term. On
// disk the snapshot is written into a new file as it arrives
// (installWriter), so that a replica never holds it whole on top of the
// volume it replaces.
func (s *ReplicaServer) Install(stream pb.Replica_InstallServer) (err error) {
	asm := &snapAssembler{lim: s.lim}
	var v *volume
	var iw *installWriter
	defer func() {
		if err != nil && iw != nil {
			iw.abort()
		}
	}()
	for {
		c, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if v == nil {
			if v, iw, err = s.startInstall(stream.Context(), c.Header); err != nil {
				return err
			}
			if iw != nil {
				asm.emit = iw.inode
			}
		}
		if err := asm.add(c); err != nil {
			return err
		}
		v.received.Add(uint64(proto.Size(c)))
	}
	hdr, all, err := asm.finish()
	if err != nil {
		return err
	}
	snap, err := checkSnapshot(all, s.lim)
	if err != nil {
		return err
	}
	if err := s.installOn(v, hdr, all, snap, iw); err != nil {
		return err
	}
	return stream.SendAndClose(&pb.InstallResponse{Lsn: snap.LSN, LastTerm: hdr.LastTerm})
}

// startInstall checks an install's header before its body is read, and
// starts its file for a volume on disk.
func (s *ReplicaServer) startInstall(ctx context.Context, h *pb.SnapshotHeader) (*volume, *installWriter, error) {
	if h == nil {
		return nil, nil, invalidf("snapshot: first chunk has no header")
	}
	if err := s.versions.check(h.ProtocolVersion, "primary "+h.NodeId); err != nil {
		return nil, nil, err
	}
	if err := checkClaim(ctx, h.NodeId); err != nil {
		return nil, nil, err
	}
	v, err := s.installTarget(h)
	if err != nil || s.dir == "" {
		return v, nil, err
	}
	iw, err := newInstallWriter(filepath.Join(s.dir, v.name+".db"), h.NextIno, s.lim)
	if err != nil {
		return nil, nil, status.Errorf(codes.Internal, "volume %q: %v", v.name, err)
	}
	return v, iw, nil
}

// installTarget checks an install's header before its body is read.
func (s *ReplicaServer) installTarget(h *pb.SnapshotHeader) (*volume, error) {
	if h.LastTerm > h.Term {
		return nil, invalidf("install: last term %d above term %d", h.LastTerm, h.Term)
	}
	v, err := s.volume(h.Volume, false)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v, v.writableBy(h.Term, h.NodeId)
}

// installOn makes the checked snapshot the volume: the file iw wrote, or
// (in memory) snap itself. all is the snapshot as received.
func (s *ReplicaServer) installOn(v *volume, h *pb.SnapshotHeader, all, snap *Snapshot, iw *installWriter) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.writableBy(h.Term, h.NodeId); err != nil { // again: the body took time
		return err
	}
	if err := v.lateInstall(h.Term, h.LastTerm, snap.LSN); err != nil {
		return err
	}
	m := meta{LastTerm: h.LastTerm, LSN: snap.LSN, NextIno: snap.NextIno, Initialized: true}
	if invariants {
		v.checkInstall(h.Term, snap.LSN)
	}
	if iw == nil {
		if err := v.st.install(snap, m); err != nil {
			return v.fail(s.log, err)
		}
	} else {
		if err := iw.finish(all, snap, m); err != nil {
			return status.Errorf(codes.Internal, "volume %q: %v", v.name, err)
		}
		if err := v.st.replace(iw.path); err != nil {
			return v.fail(s.log, err)
		}
	}
	v.wroteTerm = h.Term
	if v.ring != nil {
		v.ring.reset(m.LSN, m.LastTerm)
	}
	s.log.Info("snapshot installed", zap.String("volume", v.name), zap.Uint64("term", h.Term),
		zap.Uint64("last_term", m.LastTerm), zap.Uint64("lsn", m.LSN), zap.Int("inodes", len(snap.Inodes)))
	return nil
}

// lateInstall refuses an install that would take the volume back from
// what it holds under the same term (caller holds v.mu). Within one term
// a primary installs at its head, never behind what the replica holds, so
// such an install is one the primary gave up on — sent on a connection it
// reset and delivered after it reconnected and shipped more — and the
// replica may have acknowledged what it would undo (docs/failures.md).
func (v *volume) lateInstall(term, lastTerm, lsn uint64) error {
	m := v.st.meta
	if !m.Initialized || (v.wroteTerm != term && m.LastTerm != term) {
		return nil
	}
	if lastTerm < m.LastTerm || (lastTerm == m.LastTerm && lsn < m.LSN) {
		return preconditionf("install at lsn %d of term %d under term %d: the volume holds lsn %d of term %d, written under this term: a late install",
			lsn, lastTerm, term, m.LSN, m.LastTerm)
	}
	return nil
}

// Status implements pb.ReplicaServer.
func (s *ReplicaServer) Status(ctx context.Context, req *pb.StatusRequest) (*pb.StatusResponse, error) {
	s.mu.Lock()
	var vols []*volume
	for name, v := range s.vols {
		if req.Volume == "" || req.Volume == name {
			vols = append(vols, v)
		}
	}
	s.mu.Unlock()
	sort.Slice(vols, func(i, j int) bool { return vols[i].name < vols[j].name })
	resp := &pb.StatusResponse{}
	for _, v := range vols {
		resp.Volumes = append(resp.Volumes, v.status())
	}
	return resp, nil
}

func (v *volume) status() *pb.VolumeStatus {
	v.mu.Lock()
	defer v.mu.Unlock()
	vs := &pb.VolumeStatus{Volume: v.name, AcceptedTerm: v.accepted, Holder: v.holder, ReceivedBytes: v.received.Load()}
	if v.broken != nil {
		vs.Failed = v.broken.Error()
		return vs
	}
	m := v.st.meta
	vs.LastTerm, vs.Lsn, vs.NextIno, vs.Initialized, vs.Commits = m.LastTerm, m.LSN, m.NextIno, m.Initialized, v.st.commits
	vs.Compactions = v.st.compactions
	vs.Inodes, vs.DataBytes = v.st.counts()
	return vs
}
