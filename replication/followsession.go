package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/spoolfs/spoolfs/proto"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The ends of a Watch session that are the follower's own decision.
var (
	// errApplyFailed: the target refused records; a snapshot repairs it.
	errApplyFailed = errors.New("replication: follower: the target could not apply records")
	// errDeadSource: the stream was silent for DeadAfter.
	errDeadSource = errors.New("replication: follower: watch stream silent (no heartbeat)")
	// errSourceBehind: the source stayed behind the follower's position.
	errSourceBehind = errors.New("replication: follower: source replica behind the applied position")
)

// behindBeats is how many heartbeats in a row a source may stay behind
// the follower's position before the follower looks for another.
const behindBeats = 3

// followLimits bound what a follower takes from a replica (a file as large
// as a replica stores).
var followLimits = Limits{MaxFileSize: 1 << 40}.withDefaults()

// position is one replica's answer to Status about the volume.
type position struct {
	idx       int
	term, lsn uint64
}

// positions asks every replica for its position on the volume, within
// CallTimeout; replicas that do not answer, or hold no usable copy, are
// left out. Most advanced first.
func (f *Follower) positions(ctx context.Context) []position {
	var mu sync.Mutex
	var out []position
	var wg sync.WaitGroup
	for i, c := range f.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, f.cfg.CallTimeout)
			defer cancel()
			resp, err := c.Status(cctx, &pb.StatusRequest{Volume: f.cfg.Volume})
			if err != nil || len(resp.Volumes) != 1 {
				return
			}
			v := resp.Volumes[0]
			if !v.Initialized || v.Failed != "" {
				return
			}
			mu.Lock()
			out = append(out, position{idx: i, term: v.LastTerm, lsn: v.Lsn})
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(out, func(a, b int) bool {
		if out[a].term != out[b].term {
			return out[a].term > out[b].term
		}
		if out[a].lsn != out[b].lsn {
			return out[a].lsn > out[b].lsn
		}
		return out[a].idx < out[b].idx
	})
	return out
}

// pickSource chooses the replica to watch: the most advanced that
// answers, the current source among equals, and not exclude (the source
// that just failed) unless it is the only one. -1: none answered.
func (f *Follower) pickSource(exclude int) int {
	pos := f.positions(f.ctx)
	if len(pos) > 1 {
		pos = slices.DeleteFunc(pos, func(p position) bool { return p.idx == exclude })
	}
	if len(pos) == 0 {
		return -1
	}
	for _, p := range pos {
		if p.idx == f.src && p.term == pos[0].term && p.lsn == pos[0].lsn {
			return p.idx
		}
	}
	return pos[0].idx
}

// session watches replica src from the applied position and applies
// what arrives until the stream ends; it reports whether anything was
// applied.
func (f *Follower) session(src int, target FollowTarget) (bool, error) {
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	addr := f.cfg.Replicas[src]
	f.src = src
	f.setStatus(func(st *FollowerStatus) { st.Replica = addr })
	stream, err := f.clients[src].Watch(ctx, &pb.WatchRequest{Volume: f.cfg.Volume, NodeId: f.cfg.NodeID,
		ProtocolVersion: ProtocolVersion, FromLsn: f.lsn, FromTerm: f.term})
	if err != nil {
		return false, err
	}
	var silent atomic.Bool
	dead := time.AfterFunc(f.cfg.DeadAfter, func() { silent.Store(true); cancel() })
	defer dead.Stop()
	ws := &watchSession{f: f, target: target, addr: addr}
	for first := true; ; first = false {
		ev, err := stream.Recv()
		if err != nil {
			if silent.Load() && f.ctx.Err() == nil {
				err = fmt.Errorf("%w: %s for %v", errDeadSource, addr, f.cfg.DeadAfter)
			}
			if err == io.EOF {
				err = fmt.Errorf("replica %s ended the watch stream", addr)
			}
			return ws.progressed, err
		}
		// Silence counts while waiting for the replica, not while the
		// target applies (a 64 MiB record may take seconds): the timer
		// stops here and starts again at the next Recv.
		dead.Stop()
		if first {
			if err := (versionRange{}).check(ev.ProtocolVersion, "replica "+addr); err != nil {
				return false, err
			}
			f.setStatus(func(st *FollowerStatus) { st.Connected, st.Err = true, nil })
			f.log.Info("follower watching", zap.String("replica", addr), zap.Uint64("from_lsn", f.lsn),
				zap.Uint64("replica_lsn", ev.DurableLsn))
		}
		if err := ws.event(ev); err != nil {
			return ws.progressed, err
		}
		dead.Reset(f.cfg.DeadAfter)
	}
}

// watchSession is one Watch stream's state on the follower side.
type watchSession struct {
	f          *Follower
	target     FollowTarget
	addr       string
	pending    *Record // a record whose data is still arriving
	dataLen    uint64
	behind     int // heartbeats in a row with the source behind
	progressed bool
}

// event handles one WatchEvent: records complete in it are applied.
func (ws *watchSession) event(ev *pb.WatchEvent) error {
	f := ws.f
	f.setStatus(func(st *FollowerStatus) { st.SourceLSN = ev.DurableLsn })
	if ev.Heartbeat {
		if notBefore(ev.LastTerm, ev.DurableLsn, f.term, f.lsn) {
			ws.behind = 0
		} else if ws.behind++; ws.behind >= behindBeats {
			return fmt.Errorf("%w: %s at lsn %d of term %d, applied lsn %d of term %d", errSourceBehind,
				ws.addr, ev.DurableLsn, ev.LastTerm, f.lsn, f.term)
		}
		return nil
	}
	recs, pending, dataLen, err := decodeShip(&pb.ShipRequest{Records: ev.Records, MoreData: ev.MoreData}, ws.pending, ws.dataLen, followLimits)
	if err != nil {
		return fmt.Errorf("replica %s: %w", ws.addr, err)
	}
	ws.pending, ws.dataLen = pending, dataLen
	return ws.apply(recs, ev)
}

// apply hands the records past the applied position to the target.
func (ws *watchSession) apply(recs []*Record, ev *pb.WatchEvent) error {
	f := ws.f
	batch := make([]Record, 0, len(recs))
	for _, r := range recs {
		if r.LSN <= f.lsn { // never hand the target what it has
			continue
		}
		if want := f.lsn + 1 + uint64(len(batch)); r.LSN != want {
			return fmt.Errorf("replica %s sent lsn %d, want %d", ws.addr, r.LSN, want)
		}
		batch = append(batch, *r)
	}
	if len(batch) == 0 {
		return nil
	}
	last := batch[len(batch)-1]
	if err := ws.target.ApplyRecords(f.ctx, batch); err != nil {
		if f.ctx.Err() != nil {
			return f.ctx.Err()
		}
		// The target may have applied part of the batch: a snapshot must
		// reach at least its end.
		f.floorTerm, f.floorLSN = last.Term, last.LSN
		return fmt.Errorf("%w: lsn %d..%d: %w", errApplyFailed, batch[0].LSN, last.LSN, err)
	}
	f.setApplied(last.Term, last.LSN, false)
	ws.progressed = true
	var lag time.Duration
	if ev.DurableUnixNano != 0 {
		lag = max(0, time.Since(time.Unix(0, ev.DurableUnixNano)))
	}
	f.cfg.Observer.FollowApplied(f.cfg.Volume, len(batch), ev.DurableLsn-min(ev.DurableLsn, last.LSN), lag)
	return nil
}

// resync loads a snapshot not older than what was handed to the target
// (nor than a batch it failed to apply), from the most advanced replica
// that has one (prefer, on a tie), and makes it the target's state.
func (f *Follower) resync(prefer int, target FollowTarget) error {
	needTerm, needLSN := f.term, f.lsn
	if !notBefore(needTerm, needLSN, f.floorTerm, f.floorLSN) {
		needTerm, needLSN = f.floorTerm, f.floorLSN
	}
	f.src = prefer
	snap, term, err := f.fetchBest(f.ctx, needTerm, needLSN)
	if err != nil {
		return err
	}
	if err := target.Resync(f.ctx, snap); err != nil {
		// The target may hold part of it: the next one must reach it.
		f.floorTerm, f.floorLSN = term, snap.LSN
		return fmt.Errorf("resync the target to lsn %d: %w", snap.LSN, err)
	}
	f.floorTerm, f.floorLSN = 0, 0
	f.setApplied(term, snap.LSN, true)
	f.cfg.Observer.FollowResynced(f.cfg.Volume, snap.LSN)
	f.log.Info("follower resynchronised with a snapshot", zap.String("replica", f.cfg.Replicas[f.src]),
		zap.Uint64("lsn", snap.LSN), zap.Uint64("term", f.term), zap.Int("inodes", len(snap.Inodes)))
	return nil
}

// fetchBest fetches a snapshot at or past (needTerm, needLSN) from the
// most advanced replica that answers (f.src first among equals), trying
// the others in turn; on success // f.src the replica it came from. It returns the snapshot and its last
// term; the caller makes it the applied position once applied.
func (f *Follower) fetchBest(ctx context.Context, needTerm, needLSN uint64) (*Snapshot, uint64, error) {
	pos := f.positions(ctx)
	sort.SliceStable(pos, func(a, b int) bool { // the current source first among equals
		return pos[a].idx == f.src && pos[a].term == pos[b].term && pos[a].lsn == pos[b].lsn
	})
	var errs []string
	var denied error // a refusal of who we are, by every replica: no retry changes it
	ndenied := 0
	for _, p := range pos {
		if !notBefore(p.term, p.lsn, needTerm, needLSN) {
			errs = append(errs, fmt.Sprintf("%s: at lsn %d of term %d, behind", f.cfg.Replicas[p.idx], p.lsn, p.term))
			continue
		}
		snap, term, err := f.fetch(ctx, p.idx)
		if err == nil && !notBefore(term, snap.LSN, needTerm, needLSN) {
			err = fmt.Errorf("snapshot at lsn %d of term %d is older than lsn %d of term %d: refused", snap.LSN, term, needLSN, needTerm)
		}
		if err != nil {
			if status.Code(err) == codes.PermissionDenied {
				denied, ndenied = err, ndenied+1
			}
			errs = append(errs, f.cfg.Replicas[p.idx]+": "+err.Error())
			continue
		}
		f.src = p.idx
		return snap, term, nil
	}
	if len(pos) == 0 {
		return nil, 0, errors.New("no replica answered with the volume")
	}
	if ndenied == len(pos) {
		return nil, 0, fmt.Errorf("%w (%s)", denied, strings.Join(errs, "; "))
	}
	return nil, 0, fmt.Errorf("no snapshot at or past lsn %d of term %d: %s", needLSN, needTerm, strings.Join(errs, "; "))
}

// fetch reads replica i's copy of the volume and its last term.
func (f *Follower) fetch(ctx context.Context, i int) (*Snapshot, uint64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	asm := &snapAssembler{lim: followLimits}
	if f.opening && f.cfg.Progress != nil {
		addr := f.cfg.Replicas[i]
		asm.onData = func(inodes, bytes uint64) {
			f.cfg.Progress(Progress{Phase: "fetch", Replica: addr, Inodes: inodes, InodesTotal: asm.hdr.Inodes, Bytes: bytes, BytesTotal: asm.hdr.Bytes})
		}
	}
	if err := fetchInto(ctx, f.clients[i], &pb.FetchRequest{Volume: f.cfg.Volume, ProtocolVersion: ProtocolVersion}, asm); err != nil {
		return nil, 0, err
	}
	hdr, snap, err := asm.finish()
	if err != nil {
		return nil, 0, err
	}
	if err := (versionRange{}).check(hdr.ProtocolVersion, "replica "+f.cfg.Replicas[i]); err != nil {
		return nil, 0, err
	}
	snap, err = checkSnapshot(snap, asm.lim)
	return snap, hdr.LastTerm, err
}
