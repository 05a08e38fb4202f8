package replication

import (
	"context"
	"strings"
	"time"

	pb "github.com/spoolfs/spoolfs/proto"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// WatchHeartbeat is how often an idle Watch stream carries a heartbeat: a
// follower that heard nothing for a few of them takes its source for dead
// rather than the volume for quiet (follower.go).
const WatchHeartbeat = time.Second

// withWatchHeartbeat sets another heartbeat interval (tests).
func withWatchHeartbeat(d time.Duration) ReplicaOption {
	return func(s *ReplicaServer) { s.heartbeat = d }
}

// watchReadBytes bounds what one watcher takes from the ring at a time,
// so that a watcher stalled in Send holds about that much beyond the ring
// (and gRPC's per-stream write quota) however far behind it is.
const watchReadBytes = chunkSize

// WithWatchBuffer sets the bound, in bytes, of each volume's watch ring
// (default DefaultWatchBuffer, 64 MiB); 0 turns Watch off (answered
// FAILED_PRECONDITION, reason WATCH_DISABLED).
func WithWatchBuffer(bytes int64) ReplicaOption {
	return func(s *ReplicaServer) { s.watchBuffer = bytes }
}

// WithFollowAllow restricts who may follow the volumes it names: over
// mTLS, Watch and Fetch of such a volume answer PermissionDenied to a
// node (by its certificate) neither on its list nor the holder of its
// current term. A volume without a list may be followed by every node the
// CA authenticates; over plaintext there is no identity and no check.
func WithFollowAllow(allow map[string][]string) ReplicaOption {
	return func(s *ReplicaServer) {
		s.followAllow = map[string]map[string]bool{}
		for vol, ids := range allow {
			set := map[string]bool{}
			for _, id := range ids {
				set[id] = true
			}
			s.followAllow[vol] = set
		}
	}
}

// mayFollow refuses a caller that the volume's follow allowlist leaves
// out (WithFollowAllow).
func (s *ReplicaServer) mayFollow(ctx context.Context, v *volume) error {
	id, ok := PeerIdentity(ctx)
	if !ok {
		return nil
	}
	allowed, listed := s.followAllow[v.name]
	if !listed || allowed[id] {
		return nil
	}
	v.mu.Lock()
	holder, _, _ := strings.Cut(v.holder, "/")
	v.mu.Unlock()
	if holder == id {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "volume %q: node %q may not follow it (not on its follow allowlist)", v.name, id)
}

// Watchers is the number of Watch streams being served.
func (s *ReplicaServer) Watchers() int { return int(s.watchers.Load()) }

// CloseWatches ends every Watch stream (Unavailable), so that a replica
// stopping gracefully is not held by streams that never end on their
// own; their followers switch to another replica at once.
func (s *ReplicaServer) CloseWatches() {
	s.mu.Lock()
	s.watchClosed = true
	vols := make([]*volume, 0, len(s.vols))
	for _, v := range s.vols {
		vols = append(vols, v)
	}
	s.mu.Unlock()
	for _, v := range vols {
		if v.ring != nil {
			v.ring.shut()
		}
	}
}

// Watch implements pb.ReplicaServer: the records the volume makes
// durable, from the follower's position on, out of the volume's watch
// ring (watchring.go). The stream's goroutine reads the ring and sends;
// the applier never waits for it.
func (s *ReplicaServer) Watch(req *pb.WatchRequest, stream pb.Replica_WatchServer) error {
	if err := s.versions.check(req.ProtocolVersion, "follower "+req.NodeId); err != nil {
		return err
	}
	ctx := stream.Context()
	if err := checkClaim(ctx, req.NodeId); err != nil {
		return err
	}
	v, err := s.volume(req.Volume, false)
	if err != nil {
		return err
	}
	if err := s.mayFollow(ctx, v); err != nil {
		return err
	}
	if v.ring == nil {
		return &rejectError{code: codes.FailedPrecondition, reason: reasonWatchDisabled,
			msg: "watch: this replica keeps no watch buffer (--watch-buffer 0)"}
	}
	s.mu.Lock()
	closing := s.watchClosed
	s.mu.Unlock()
	if closing {
		return status.Error(codes.Unavailable, "replica closing its watch streams")
	}
	s.watchers.Add(1)
	defer s.watchers.Add(-1)
	w := &watcher{ring: v.ring, stream: stream, heartbeat: s.heartbeat, cur: watchCursor{lsn: req.FromLsn, term: req.FromTerm},
		version: peerVersion(req.ProtocolVersion)}
	err = w.run(ctx)
	if err != nil && status.Code(err) != codes.Canceled {
		s.log.Debug("watch stream ended", zap.String("volume", v.name), zap.String("node", req.NodeId), zap.Error(err))
	}
	return err
}

// watcher is one Watch stream: its cursor in the ring.
type watcher struct {
	ring      *watchRing
	stream    pb.Replica_WatchServer
	heartbeat time.Duration
	cur       watchCursor
	version   uint32 // answered in the first event only (0 once sent)
}

// run sends what the ring holds after the cursor, waits for more, and
// sends a heartbeat each heartbeat interval (WatchHeartbeat) it had nothing to send. The first
// event goes out at once, so that the follower knows the stream is up and
// where the replica stands.
func (w *watcher) run(ctx context.Context) error {
	lsn, term := w.ring.position()
	if err := w.send(&pb.WatchEvent{Heartbeat: true, DurableLsn: lsn, LastTerm: term}); err != nil {
		return err
	}
	hb := time.NewTimer(w.heartbeat)
	defer hb.Stop()
	for {
		recs, lsn, term, wake, err := w.ring.read(&w.cur, watchReadBytes)
		if err != nil {
			return err
		}
		if len(recs) > 0 {
			if err := w.sendRecords(recs, lsn, term); err != nil {
				return err
			}
			last := recs[len(recs)-1].r
			w.cur.lsn, w.cur.term = last.LSN, last.Term
			hb.Reset(w.heartbeat)
			continue
		}
		select {
		case <-wake:
		case <-hb.C:
			if err := w.send(&pb.WatchEvent{Heartbeat: true, DurableLsn: lsn, LastTerm: term}); err != nil {
				return err
			}
			hb.Reset(w.heartbeat)
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

func (w *watcher) send(ev *pb.WatchEvent) error {
	ev.ProtocolVersion, w.version = w.version, 0
	return w.stream.Send(ev)
}

// sendRecords packs records into events as sendRecords packs Ship
// messages (packRecords). Every event carries the replica's position
// (lsn, term), and the first record's durable time.
func (w *watcher) sendRecords(recs []ringRec, lsn, term uint64) error {
	return packRecords(len(recs), func(i int) (*Record, int) { return recs[i].r, int(recs[i].size) },
		&watchBatch{w: w, recs: recs, lsn: lsn, term: term, ev: &pb.WatchEvent{DurableLsn: lsn, LastTerm: term}})
}

// watchBatch is a Watch event being packed.
type watchBatch struct {
	w         *watcher
	recs      []ringRec
	lsn, term uint64
	ev        *pb.WatchEvent
}

func (b *watchBatch) pending() int { return len(b.ev.Records) }

func (b *watchBatch) add(i int, p *pb.Record) {
	if len(b.ev.Records) == 0 {
		b.ev.DurableUnixNano = b.recs[i].at
	}
	b.ev.Records = append(b.ev.Records, p)
}

func (b *watchBatch) more(data []byte) error {
	return b.w.send(&pb.WatchEvent{MoreData: data, DurableLsn: b.lsn, LastTerm: b.term})
}

func (b *watchBatch) flush() error {
	if len(b.ev.Records) == 0 {
		return nil
	}
	err := b.w.send(b.ev)
	b.ev = &pb.WatchEvent{DurableLsn: b.lsn, LastTerm: b.term}
	return err
}
