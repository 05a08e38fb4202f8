package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	pb "github.com/spoolfs/spoolfs/proto"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Pipelining bounds of one replica stream: records sent but not yet
// acknowledged.
const (
	maxInflightRecords = 1 << 14
	maxInflightBytes   = 64 << 20
	maxSendRecords     = 256 // records per message
)

// errResync ends a session whose replica needs a snapshot first.
var errResync = errors.New("replication: replica needs a snapshot")

// link is the primary's connection to one replica: one goroutine (run)
// owning the Ship stream, plus a receiver goroutine per session.
type link struct {
	p      *Primary
	idx    int // in PrimaryConfig.Replicas
	addr   string
	conn   *grpc.ClientConn
	client pb.ReplicaClient
	wake   chan struct{} // cap 1: records to send now (a Wait, the ShipDelay timer), acks
	rewind atomic.Uint64 // lsn to resend from after a gap (0: none)
	// pokes counts the times the link was told to send (poke), coalesced
	// or not. Only tests read it: who was woken is decided synchronously
	// (Append, Wait, the ShipDelay timer), so a count read after one of
	// those returned shows a wrong wake however late its send would land.
	pokes atomic.Uint64
	// sessions counts the sessions the link started (tests wait for
	// retries with it instead of sleeping through some).
	sessions atomic.Uint64

	blocked atomic.Bool // pump waits for acks: its window is full

	// Guarded by p.mu.
	sent    []sentMark    // sends not yet acknowledged, oldest first
	ackEWMA time.Duration // moving average of send→ack latency
	acked   uint64
	// answered is when the replica last answered: a handshake or an ack
	// (setAcked), or a probe (probe.go). INVARIANT: never moves back.
	answered   time.Time
	connected  bool
	granted    bool // the replica accepted our term
	needResync bool
	resyncs    int
	lastErr    error

	// Installs (pin.go). pin is non-nil from the start of an install
	// until the replica caught up; cancel ends the session that pin
	// serves. Counters for Status: installs started, overflows (installs
	// the writes outran), repeats (snapshots needed again before the
	// replica caught up after one).
	pin                          *logPin
	cancel                       context.CancelFunc
	catchingUp                   bool
	overflowed                   bool          // an overflow ended the session: takeOverflow logs it
	resyncWait                   time.Duration // wait before the next install after an overflow
	resyncAfter                  time.Time     // no install before
	installs, overflows, repeats int
}

// sentMark is when the records up to lsn were sent.
type sentMark struct {
	lsn uint64
	at  time.Time
}

// maxSentMarks bounds link.sent; past it the oldest marks are dropped
// (the average then misses a few samples).
const maxSentMarks = 1024

// markSent notes that records up to lsn left now.
func (l *link) markSent(lsn uint64) {
	now := time.Now()
	l.p.mu.Lock()
	if len(l.sent) >= maxSentMarks {
		l.sent = append(l.sent[:0], l.sent[1:]...)
	}
	l.sent = append(l.sent, sentMark{lsn, now})
	l.p.mu.Unlock()
}

// ackedLocked folds the latency of the sends lsn acknowledges into
// ackEWMA (weight 1/8; caller holds p.mu).
func (l *link) ackedLocked(lsn uint64) {
	n := 0
	for n < len(l.sent) && l.sent[n].lsn <= lsn {
		n++
	}
	if n == 0 {
		return
	}
	d := time.Since(l.sent[n-1].at)
	l.ackEWMA += (d - l.ackEWMA) / 8
	if o := l.p.cfg.Observer; o != nil {
		o.Acked(l.idx, d)
	}
	l.sent = append(l.sent[:0], l.sent[n:]...)
}

// latency orders links for the quorum: the moving average of their ack
// latency, and a stalled link last (caller holds p.mu).
func (l *link) latency(now time.Time) time.Duration {
	if l.stalled(now) {
		return time.Hour + now.Sub(l.sent[0].at)
	}
	return l.ackEWMA
}

// stalled: a send has waited for its ack more than 8× the average and
// more than 100 ms (caller holds p.mu). Under load acks take a few times
// their average now and then; a single slow wait is the hedge's business,
// the quorum set changes for a replica that stopped answering.
func (l *link) stalled(now time.Time) bool {
	if len(l.sent) == 0 {
		return false
	}
	age := now.Sub(l.sent[0].at)
	return age > 8*l.ackEWMA && age > 100*time.Millisecond
}

func (l *link) poke() {
	l.pokes.Add(1)
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *link) log() *zap.Logger { return l.p.log.With(zap.String("replica", l.addr)) }

// run keeps a session going until the primary stops or is fenced.
func (l *link) run() {
	defer l.p.wg.Done()
	bo := l.p.cfg.retrySchedule(linkJitter)
	var lastMsg string
	for {
		l.sessions.Add(1)
		progressed, err := l.session()
		if l.p.ctx.Err() != nil {
			return
		}
		if isFenced(err) {
			l.p.fence(l.addr, err)
			return
		}
		l.down(err)
		if errors.Is(err, errResync) {
			continue
		}
		if msg := fmt.Sprint(err); msg != lastMsg {
			l.log().Warn("replica link down, retrying", zap.Error(err))
			lastMsg = msg
		}
		if progressed {
			bo.Reset()
			lastMsg = ""
		}
		select {
		case <-time.After(bo.NextBackOff()):
		case <-l.p.ctx.Done():
			return
		}
	}
}

func (l *link) down(err error) {
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	l.connected, l.lastErr = false, err
	l.cancel = nil // no session: an overflow of its pin stops nothing (pin.go)
	// A replica that does not hold our term, or no longer has the volume
	// at all (NotFound: replaced by an empty one on the same address), is
	// asked to acquire it again: Acquire creates the volume there, and the
	// handshake then finds it empty and installs a snapshot.
	if isNotAcquired(err) || status.Code(err) == codes.NotFound {
		l.granted = false
	}
}

// session: make sure the replica is on our term and history, then stream.
func (l *link) session() (progressed bool, err error) {
	if err := l.ensureTerm(); err != nil {
		return false, err
	}
	ctx, cancel := context.WithCancel(l.p.ctx)
	defer cancel()
	l.p.mu.Lock()
	resync := l.needResync
	l.cancel = cancel // what an overflow of this session's pin stops
	l.p.mu.Unlock()
	if resync {
		if err := l.resync(ctx); err != nil {
			return false, l.takeOverflow(err)
		}
		progressed = true
	}
	stream, next, target, err := l.open(ctx, cancel)
	if err != nil {
		return progressed, err
	}
	errc := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.receive(stream, errc)
	}()
	err = l.pump(ctx, stream, next, target, errc)
	cancel()
	<-done
	return true, l.takeOverflow(err)
}

// ensureTerm asks a replica that did not grant our term yet to accept it.
func (l *link) ensureTerm() error {
	l.p.mu.Lock()
	granted := l.granted
	l.p.mu.Unlock()
	if granted {
		return nil
	}
	ctx, cancel := context.WithTimeout(l.p.ctx, l.p.cfg.CallTimeout)
	defer cancel()
	resp, err := l.client.Acquire(ctx, &pb.AcquireRequest{Volume: l.p.cfg.Volume, Term: l.p.term, NodeId: l.p.cfg.holder,
		ProtocolVersion: l.p.cfg.versions.speaks()})
	if err == nil {
		err = l.p.cfg.versions.check(resp.ProtocolVersion, "replica "+l.addr)
	}
	if err != nil {
		return fmt.Errorf("acquire term %d: %w", l.p.term, err)
	}
	if resp.AcceptedTerm > l.p.term {
		return fencedError(l.p.term, resp.AcceptedTerm)
	}
	l.p.mu.Lock()
	l.granted = true
	l.p.mu.Unlock()
	return nil
}

// open starts a Ship stream and decides where to resume from.
//
// It returns the first lsn to send and the head when the link became
// connected: what the session sends at once. Records appended after that
// follow the usual rules (a Wait, the ShipDelay timer), so that "connected"
// in Status is where they start to apply.
func (l *link) open(ctx context.Context, cancel context.CancelFunc) (stream pb.Replica_ShipClient, next, head uint64, err error) {
	stream, err = l.client.Ship(ctx)
	if err != nil {
		return nil, 0, 0, err
	}
	hdr := &pb.ShipRequest{Header: &pb.ShipHeader{Volume: l.p.cfg.Volume, Term: l.p.term, NodeId: l.p.cfg.holder,
		ProtocolVersion: l.p.cfg.versions.speaks()}}
	if err := stream.Send(hdr); err != nil {
		return nil, 0, 0, recvStatus(stream, err)
	}
	timer := time.AfterFunc(l.p.cfg.CallTimeout, cancel) // a replica that never answers
	pos, err := stream.Recv()
	if !timer.Stop() {
		return nil, 0, 0, fmt.Errorf("ship handshake: no answer within %v", l.p.cfg.CallTimeout)
	}
	if err == nil {
		err = l.p.cfg.versions.check(pos.ProtocolVersion, "replica "+l.addr)
	}
	if err != nil {
		return nil, 0, 0, fmt.Errorf("ship handshake: %w", err)
	}
	if !l.p.sameHistory(pos) {
		l.markResync("replica at lsn %d of term %d is not on this primary's history", pos.DurableLsn, pos.LastTerm)
		return nil, 0, 0, errResync
	}
	if _, ok := l.p.records(pos.DurableLsn+1, 1, 1); !ok {
		l.markResync("log starts after the replica's lsn %d", pos.DurableLsn)
		return nil, 0, 0, errResync
	}
	l.p.mu.Lock()
	l.connected, l.lastErr = true, nil
	l.sent = l.sent[:0] // marks of an earlier stream
	head = l.p.head
	l.p.mu.Unlock()
	l.p.setAcked(l, pos.DurableLsn)
	l.log().Info("replica stream open", zap.Uint64("replica_lsn", pos.DurableLsn), zap.Uint64("head", head))
	return stream, pos.DurableLsn + 1, head, nil
}

func (l *link) markResync(format string, args ...any) {
	l.log().Info("replica needs a snapshot: " + fmt.Sprintf(format, args...))
	l.p.mu.Lock()
	l.needResync = true
	if l.catchingUp { // needed again before it caught up after one
		l.repeats++
		l.catchingUp = false
	}
	l.p.unpinLocked(l)
	l.p.mu.Unlock()
}

// sameHistory: the replica holds a prefix of this primary's history
// (doc.go, Histories).
func (p *Primary) sameHistory(pos *pb.Ack) bool {
	if !pos.Initialized || pos.DurableLsn > p.headLSN() {
		return false
	}
	return pos.LastTerm == p.term || (pos.LastTerm == p.baseTerm && pos.DurableLsn <= p.baseLSN)
}

func (p *Primary) headLSN() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.head
}

// receive reads acks until the stream ends.
func (l *link) receive(stream pb.Replica_ShipClient, errc chan<- error) {
	for {
		ack, err := stream.Recv()
		if err != nil {
			errc <- err
			return
		}
		if ack.Gap {
			l.rewind.Store(ack.DurableLsn + 1)
		}
		if invariants {
			l.p.checkAckTerm(l.addr, ack)
		}
		l.p.setAcked(l, ack.DurableLsn)
		if ack.Gap || l.blocked.Load() {
			l.poke() // resend, or the window opened
		}
	}
}

// pump sends records without waiting for acks, within the inflight
// window: at the start of a session everything the log holds, then, each
// time the link is woken, everything up to the head as it is then. A link
// nobody woke sends nothing, so a trailing replica gets records in the
// batches the ShipDelay timer makes (doc.go, "Quorum first").
func (l *link) pump(ctx context.Context, stream pb.Replica_ShipClient, next, target uint64, errc chan error) error {
	for {
		if r := l.rewind.Swap(0); r != 0 && r < next {
			l.log().Info("replica reported a gap: resending", zap.Uint64("from", r))
			next = r
		}
		var recs []*Record
		if next <= target {
			var ok bool
			recs, ok = l.p.records(next, min(l.window(next), int(min(target-next+1, 1<<30))), maxInflightBytes)
			if !ok {
				l.markResync("log no longer reaches lsn %d", next)
				_ = stream.CloseSend()
				return errResync
			}
		}
		if len(recs) == 0 {
			// A full window waits for an ack, which wakes a blocked link;
			// check again after saying so, for an ack that came between.
			if full := next <= target && l.window(next) == 0; full != l.blocked.Load() {
				l.blocked.Store(full)
				continue
			}
			select {
			case <-l.wake:
				target = l.p.headLSN()
				continue
			case err := <-errc:
				return l.streamEnded(err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		last := recs[len(recs)-1].LSN
		if err := sendRecords(stream, l.p.testSkip(recs)); err != nil {
			return l.streamEnded(recvErr(errc, err))
		}
		l.markSent(last)
		next = last + 1
	}
}

// window is how many records may be sent from next on.
func (l *link) window(next uint64) int {
	l.p.mu.Lock()
	inflight := next - 1 - min(l.acked, next-1)
	l.p.mu.Unlock()
	if inflight >= maxInflightRecords {
		return 0
	}
	return min(maxInflightRecords-int(inflight), 4*maxSendRecords)
}

// streamEnded classifies the end of a stream: a rejected record means the
// replica's state and ours differ, which a snapshot repairs.
func (l *link) streamEnded(err error) error {
	if err == nil || err == io.EOF {
		return errors.New("replica closed the stream")
	}
	if isRejection(err) && reasonOf(err) == "" {
		l.log().Error("replica rejected a record: resynchronising it with a snapshot", zap.Error(err))
		l.markResync("rejected: %v", err)
	}
	return err
}

// recvErr returns the stream's status after a failed Send (which only
// says io.EOF).
func recvErr(errc chan error, sendErr error) error {
	if sendErr != io.EOF {
		return sendErr
	}
	select {
	case err := <-errc:
		return err
	case <-time.After(5 * time.Second):
		return sendErr
	}
}

func recvStatus(stream pb.Replica_ShipClient, sendErr error) error {
	if sendErr != io.EOF {
		return sendErr
	}
	_, err := stream.Recv()
	if err == nil {
		return sendErr
	}
	return err
}

// sendRecords packs records into messages of about chunkSize bytes; data
// longer than that follows in more_data messages.
func sendRecords(stream pb.Replica_ShipClient, recs []*Record) error {
	return packRecords(len(recs), func(i int) (*Record, int) { return recs[i], int(recordSize(recs[i])) },
		&shipBatch{stream: stream, msg: &pb.ShipRequest{}})
}

// recordBatch is the message packRecords fills: a Ship request or a
// Watch event.
type recordBatch interface {
	pending() int            // records in the message being built
	add(i int, p *pb.Record) // appends record i
	flush() error            // sends the message, if it holds any, and starts the next
	more(data []byte) error  // sends data following the last record added
}

// packRecords packs n records (rec gives each with its size) into
// messages of about chunkSize bytes and at most maxSendRecords records;
// a record's data past chunkSize follows in more-data messages.
func packRecords(n int, rec func(i int) (*Record, int), b recordBatch) error {
	size := 0
	for i := range n {
		r, rs := rec(i)
		if b.pending() >= maxSendRecords || (size > 0 && size+rs > chunkSize) {
			if err := b.flush(); err != nil {
				return err
			}
			size = 0
		}
		b.add(i, recordToPB(r, chunkSize))
		size += rs
		if len(r.Data) <= chunkSize {
			continue
		}
		if err := b.flush(); err != nil {
			return err
		}
		size = 0
		for rest := r.Data[chunkSize:]; len(rest) > 0; {
			k := min(len(rest), chunkSize)
			if err := b.more(rest[:k]); err != nil {
				return err
			}
			rest = rest[k:]
		}
	}
	return b.flush()
}

// shipBatch is a Ship request being packed.
type shipBatch struct {
	stream pb.Replica_ShipClient
	msg    *pb.ShipRequest
}

func (b *shipBatch) pending() int            { return len(b.msg.Records) }
func (b *shipBatch) add(_ int, p *pb.Record) { b.msg.Records = append(b.msg.Records, p) }
func (b *shipBatch) more(data []byte) error  { return b.stream.Send(&pb.ShipRequest{MoreData: data}) }

func (b *shipBatch) flush() error {
	if len(b.msg.Records) == 0 {
		return nil
	}
	err := b.stream.Send(b.msg)
	b.msg = &pb.ShipRequest{}
	return err
}

// resync installs a snapshot from the actor on the replica. The log keeps
// the records after the snapshot's LSN for it (pin.go) until it caught up;
// the session ends when the writes outrun the install.
func (l *link) resync(ctx context.Context) error {
	if err := l.waitResync(); err != nil {
		return err
	}
	l.p.mu.Lock()
	src := l.p.snapSrc
	l.p.mu.Unlock()
	if src == nil {
		return errors.New("replica needs a snapshot and no snapshot source is set yet")
	}
	// A snapshot costs the actor a walk of the volume: none for a replica
	// that does not answer.
	pctx, pcancel := context.WithTimeout(ctx, l.p.cfg.CallTimeout)
	_, err := l.client.Status(pctx, &pb.StatusRequest{Volume: l.p.cfg.Volume})
	pcancel()
	if err != nil {
		return fmt.Errorf("replica needs a snapshot: %w", err)
	}
	l.p.mu.Lock()
	l.p.pinLocked(l)
	l.p.mu.Unlock()
	err = l.install(ctx, src)
	if err != nil {
		l.p.mu.Lock()
		l.p.unpinLocked(l)
		l.p.mu.Unlock()
	}
	return err
}

// install takes a snapshot from src and installs it on the replica.
func (l *link) install(ctx context.Context, src SnapshotSource) error {
	snap, err := src(ctx)
	if err != nil {
		return fmt.Errorf("snapshot for resync: %w", err)
	}
	if snap.Release != nil {
		defer snap.Release()
	}
	if invariants {
		l.checkResync(snap.LSN)
	}
	l.p.mu.Lock()
	if l.pin != nil {
		l.p.advancePinLocked(l, snap.LSN)
		l.pin.bound = max(l.p.cfg.MaxLogBytes, int64(snapDataBytes(snap)))
	}
	l.p.mu.Unlock()
	hdr := &pb.SnapshotHeader{Volume: l.p.cfg.Volume, Term: l.p.term, LastTerm: l.p.termAt(snap.LSN), NodeId: l.p.cfg.holder,
		ProtocolVersion: l.p.cfg.versions.speaks()}
	start := time.Now()
	if err := installSnapshot(ctx, l.client, hdr, snap, nil); err != nil {
		return fmt.Errorf("install snapshot at lsn %d: %w", snap.LSN, err)
	}
	l.p.mu.Lock()
	l.needResync = false
	l.resyncs++
	if l.pin != nil {
		l.pin.installed = true
	}
	l.p.mu.Unlock()
	l.p.setAcked(l, snap.LSN)
	l.log().Info("replica resynchronised with a snapshot", zap.Uint64("lsn", snap.LSN),
		zap.Int("inodes", len(snap.Inodes)), zap.Uint64("bytes", snapDataBytes(snap)), zap.Duration("took", time.Since(start)))
	return nil
}

// installSnapshot streams snap to a replica's Install.
func installSnapshot(ctx context.Context, c pb.ReplicaClient, hdr *pb.SnapshotHeader, snap *Snapshot, progress func(inodes, bytes uint64)) error {
	stream, err := c.Install(ctx)
	if err != nil {
		return err
	}
	err = sendSnapshot(hdr, snap, stream.Send, progress)
	if err != nil && err != io.EOF {
		return err
	}
	_, rerr := stream.CloseAndRecv()
	if rerr != nil {
		return rerr
	}
	return err
}
