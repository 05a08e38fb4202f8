package replication

import (
	"context"
	"io"
	"time"

	pb "github.com/spoolfs/spoolfs/proto"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Group commit bounds: a batch takes whatever has arrived, up to these.
const (
	maxBatchRecords = 4096
	maxBatchBytes   = 16 << 20
	shipQueueLen    = 64 // messages between the receiver and the applier
)

// Ship implements pb.ReplicaServer: one ordered stream of records. The
// stream's goroutine is the applier; a receiver goroutine decodes
// messages into complete records and queues them (doc.go).
func (s *ReplicaServer) Ship(stream pb.Replica_ShipServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	h := first.Header
	if h == nil || len(first.Records) > 0 || len(first.MoreData) > 0 {
		return invalidf("ship: the first message must be a header alone")
	}
	if err := s.versions.check(h.ProtocolVersion, "primary "+h.NodeId); err != nil {
		return err
	}
	if err := checkClaim(stream.Context(), h.NodeId); err != nil {
		return err
	}
	v, err := s.volume(h.Volume, false)
	if err != nil {
		return err
	}
	ack, termCh, err := v.handshake(h.Term, h.NodeId)
	if err != nil {
		return err
	}
	ack.ProtocolVersion = peerVersion(h.ProtocolVersion) // the handshake's answer only
	if err := stream.Send(ack); err != nil {
		return err
	}
	s.streams.Add(1)
	defer s.streams.Add(-1)
	sess := &shipSession{s: s, v: v, stream: stream, term: h.Term, termCh: termCh,
		queue: make(chan []*Record, shipQueueLen), errc: make(chan error, 1),
		log: s.log.With(zap.String("volume", v.name), zap.String("node", h.NodeId), zap.Uint64("term", h.Term))}
	go sess.receive(stream.Context())
	err = sess.apply(stream.Context())
	if err != nil && status.Code(err) != codes.Canceled {
		sess.log.Warn("ship stream ended", zap.Error(err))
	}
	return err
}

// handshake checks a stream's term and returns the replica's position and
// the channel closed when a higher term is accepted.
func (v *volume) handshake(term uint64, holder string) (*pb.Ack, <-chan struct{}, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.writableBy(term, holder); err != nil {
		return nil, nil, err
	}
	ack := v.ack(false)
	if invariants {
		v.checkAck(ack, false)
	}
	return ack, v.termCh, nil
}

// fencedSince says whether a term above term was accepted, and returns the
// channel that tells of the next change otherwise.
func (v *volume) fencedSince(term uint64) (<-chan struct{}, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if term < v.accepted {
		return nil, fencedError(term, v.accepted)
	}
	return v.termCh, nil
}

// ack describes the committed position (caller holds v.mu).
func (v *volume) ack(gap bool) *pb.Ack {
	m := v.st.meta
	return &pb.Ack{DurableLsn: m.LSN, LastTerm: m.LastTerm, Gap: gap, Initialized: m.Initialized, AcceptedTerm: v.accepted}
}

type shipSession struct {
	s      *ReplicaServer
	v      *volume
	stream pb.Replica_ShipServer
	term   uint64
	termCh <-chan struct{} // closed when the volume accepts another term
	queue  chan []*Record
	errc   chan error // the receiver's end: nil on EOF
	log    *zap.Logger

	gapAt   uint64 // position at which a gap was reported
	gapSent bool
}

// receive runs on its own goroutine: messages → complete records → queue.
func (ss *shipSession) receive(ctx context.Context) {
	var pending *Record // a record whose data is still arriving
	var dataLen uint64
	for {
		req, err := ss.stream.Recv()
		if err == io.EOF {
			err = nil
			if pending != nil {
				err = invalidf("ship: stream ended inside the data of lsn %d", pending.LSN)
			}
		}
		if err == nil && req == nil {
			ss.errc <- nil
			return
		}
		var batch []*Record
		if err == nil {
			ss.v.received.Add(uint64(proto.Size(req)))
			batch, pending, dataLen, err = decodeShip(req, pending, dataLen, ss.s.lim)
		}
		if err != nil {
			ss.errc <- err
			return
		}
		if len(batch) == 0 {
			continue
		}
		ss.s.received.Add(uint64(len(batch)))
		select {
		case ss.queue <- batch:
		case <-ctx.Done():
			return
		}
	}
}

// decodeShip turns one message into the records it completes; pending is
// a record whose data (dataLen bytes in all) is still arriving.
func decodeShip(req *pb.ShipRequest, pending *Record, dataLen uint64, lim Limits) ([]*Record, *Record, uint64, error) {
	if req.Header != nil {
		return nil, nil, 0, invalidf("ship: header repeated")
	}
	var out []*Record
	if len(req.MoreData) > 0 {
		if pending == nil {
			return nil, nil, 0, invalidf("ship: more_data without a record to continue")
		}
		if uint64(len(pending.Data))+uint64(len(req.MoreData)) > dataLen {
			return nil, nil, 0, invalidf("ship: lsn %d: more data than its data_len %d", pending.LSN, dataLen)
		}
		pending.Data = append(pending.Data, req.MoreData...)
		if uint64(len(pending.Data)) == dataLen {
			out, pending = append(out, pending), nil
		}
	}
	for _, p := range req.Records {
		if pending != nil {
			return nil, nil, 0, invalidf("ship: lsn %d arrived inside the data of lsn %d", p.Lsn, pending.LSN)
		}
		r, err := decodeRecord(p)
		if err != nil {
			return nil, nil, 0, invalidf("ship: %v", err)
		}
		if p.DataLen > lim.MaxFileSize || (p.DataLen > uint64(lim.MaxXattrValue) && r.Op == OpSetXattr) {
			return nil, nil, 0, invalidf("ship: lsn %d %s: payload of %d bytes exceeds the limit", r.LSN, r.Op, p.DataLen)
		}
		if uint64(len(p.Data)) > p.DataLen {
			return nil, nil, 0, invalidf("ship: lsn %d: %d data bytes but data_len %d", r.LSN, len(p.Data), p.DataLen)
		}
		if uint64(len(p.Data)) < p.DataLen {
			r.Data = append(make([]byte, 0, min(p.DataLen, 4*chunkSize)), p.Data...)
			pending, dataLen = r, p.DataLen
			continue
		}
		out = append(out, r)
	}
	return out, pending, dataLen, nil
}

// apply is the applier loop: take what has arrived, apply it as one
// batch, commit once, acknowledge.
func (ss *shipSession) apply(ctx context.Context) error {
	for {
		var batch []*Record
		var end bool
		var endErr error
		select {
		case batch = <-ss.queue:
		case endErr = <-ss.errc:
			end = true
		case <-ss.termCh:
			ch, err := ss.v.fencedSince(ss.term)
			if err != nil {
				ss.log.Info("ship stream ends: a higher term was accepted", zap.Error(err))
				return err
			}
			ss.termCh = ch
			continue
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
		if h := ss.s.hookBeforeApply.Load(); h != nil && !end {
			(*h)()
		}
		batch = ss.drain(batch)
		if len(batch) > 0 {
			if err := ss.applyBatch(batch); err != nil {
				return err
			}
		}
		if end {
			return endErr
		}
	}
}

// drain adds whatever else is queued, within the batch bounds.
func (ss *shipSession) drain(batch []*Record) []*Record {
	size := 0
	for _, r := range batch {
		size += int(recordSize(r))
	}
	for len(batch) < maxBatchRecords && size < maxBatchBytes {
		select {
		case more := <-ss.queue:
			batch = append(batch, more...)
			for _, r := range more {
				size += int(recordSize(r))
			}
		default:
			return batch
		}
	}
	return batch
}

func (ss *shipSession) applyBatch(batch []*Record) error {
	ack, err := ss.v.applyBatch(batch, ss.s.lim, ss.s.obs, ss.s.log)
	if err != nil {
		return err
	}
	if ack.Gap {
		if ss.gapSent && ss.gapAt == ack.DurableLsn {
			return nil // reported already; the primary is resending
		}
		ss.gapSent, ss.gapAt = true, ack.DurableLsn
	} else {
		ss.gapSent = false
	}
	if err := ss.stream.Send(ack); err != nil {
		return err
	}
	return ss.v.maybeShrink(ss.s.log)
}

// maybeShrink lets the store rewrite its file once an ack went out, so
// that the rewrite delays the next batch, which meanwhile grows, rather
// than the acknowledgement of this one.
func (v *volume) maybeShrink(log *zap.Logger) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.st == nil || v.broken != nil {
		return nil
	}
	if err := v.st.maybeShrink(); err != nil {
		return v.fail(log, err)
	}
	return nil
}

// applyBatch validates and applies records in lsn order against a scratch
// view, then commits them in one write and one fsync. Records the replica
// has already are skipped; a record past the next lsn is a gap: it is
// dropped, and if the batch does not fill the gap the ack says so.
func (v *volume) applyBatch(batch []*Record, lim Limits, obs ReplicaObserver, log *zap.Logger) (*pb.Ack, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.usable(); err != nil {
		return nil, err
	}
	m := v.st.meta
	if !m.Initialized {
		return nil, preconditionf("volume %q not initialized: install a snapshot first", v.name)
	}
	view, done := v.st.view()
	before := m
	m, gap, err := v.applyTo(view, m, batch, lim)
	done()
	if err != nil {
		return nil, err
	}
	if invariants {
		v.checkApplied(before, m, batch)
	}
	if m != v.st.meta {
		if err := v.st.commit(view, m); err != nil {
			return nil, v.fail(log, err)
		}
		v.wroteTerm = v.accepted
		v.reopenWait = nil // storage works: a later failure waits reopenMin again
		if v.ring != nil {
			v.ring.append(batch, before.LSN, m.LSN, time.Now().UnixNano())
		}
		v.logDurable(log, batch, before.LSN, m.LSN)
		obs.Committed(v.name, int(m.LSN-before.LSN), v.st.lastSync)
	}
	ack := v.ack(gap)
	if invariants {
		v.checkAck(ack, true)
	}
	return ack, nil
}

func (v *volume) applyTo(view *view, m meta, batch []*Record, lim Limits) (meta, bool, error) {
	ap := &applier{v: view, lim: lim, meta: &m}
	var dropped uint64 // highest lsn dropped past a gap
	for _, r := range batch {
		if err := checkTerm(r.Term, v.accepted); err != nil {
			return m, false, err
		}
		if r.LSN <= m.LSN {
			if r.Term == m.LastTerm {
				continue // a resend of what is here
			}
			return m, false, preconditionf("lsn %d of term %d: the replica holds lsn %d of term %d: histories differ, install a snapshot",
				r.LSN, r.Term, m.LSN, m.LastTerm)
		}
		if r.LSN > m.LSN+1 {
			dropped = max(dropped, r.LSN)
			continue
		}
		if err := ap.apply(r); err != nil {
			return m, false, err
		}
		m.LSN, m.LastTerm = r.LSN, r.Term
	}
	return m, dropped > m.LSN, nil
}

// logDurable writes, at debug level, the batch that just made the records
// after lsn from up to lsn to durable: their LSNs, the request ids that
// produced them on the primary (Record.Req, in LSN order, each once) and
// the fsync's duration. It is the replica's end of following one message
// (docs/operations.md, "Following one message"). Records of the batch
// outside (from, to] (resends, past a gap) were not written by it.
func (v *volume) logDurable(log *zap.Logger, batch []*Record, from, to uint64) {
	ce := log.Check(zap.DebugLevel, "batch durable")
	if ce == nil {
		return
	}
	reqs := make([]uint64, 0, len(batch))
	for _, r := range batch {
		if r.LSN <= from || r.LSN > to || r.Req == 0 {
			continue
		}
		if n := len(reqs); n == 0 || reqs[n-1] != r.Req {
			reqs = append(reqs, r.Req)
		}
	}
	ce.Write(zap.String("volume", v.name), zap.Uint64("term", v.accepted),
		zap.Uint64("first_lsn", from+1), zap.Uint64("last_lsn", to),
		zap.Uint64s("reqs", reqs), zap.Duration("fsync", v.st.lastSync))
}
