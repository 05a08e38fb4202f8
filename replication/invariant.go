package replication

import (
	"fmt"
	"os"

	pb "github.com/spoolfs/spoolfs/proto"
)

// The invariants of the replication protocol (docs/replication-protocol.md
// names each one). Every check here runs only in builds with -tags
// invariants (invariants_on.go): the callers guard each call with
// `if invariants`, a constant, so a production build holds none of it.
// A broken invariant panics: it is a bug, never an answer to a peer.

func invariantf(format string, args ...any) {
	panic(fmt.Sprintf("replication: invariant broken: "+format, args...))
}

// checkGrant (R1): a granted term is the highest the replica ever
// accepted, and it is on disk before the grant is answered (caller holds
// v.mu).
func (v *volume) checkGrant(before, term uint64, holder string) {
	if v.accepted != term || term < before {
		invariantf("volume %q granted term %d to %q: accepted %d, was %d", v.name, term, holder, v.accepted, before)
	}
	if v.termPath == "" {
		return
	}
	tf, err := readTermFile(v.termPath)
	if err != nil || tf.Term != term || tf.Holder != v.holder {
		invariantf("volume %q granted term %d to %q but its term file says %+v (%v)", v.name, term, v.holder, tf, err)
	}
}

// checkApplied (R2, R3): a batch applied under the accepted term moves the
// position one lsn per applied record, in order, and never above the
// accepted term (caller holds v.mu).
func (v *volume) checkApplied(before, after meta, batch []*Record) {
	if after.LastTerm > v.accepted || (after.LSN > before.LSN && after.LastTerm != v.accepted) {
		invariantf("volume %q applied up to lsn %d of term %d under accepted term %d", v.name, after.LSN, after.LastTerm, v.accepted)
	}
	if after.LSN < before.LSN || (after.LSN == before.LSN && after.LastTerm != before.LastTerm) {
		invariantf("volume %q moved back from lsn %d of term %d to lsn %d of term %d", v.name, before.LSN, before.LastTerm, after.LSN, after.LastTerm)
	}
	next := before.LSN + 1
	for _, r := range batch {
		if r.LSN == next && next <= after.LSN {
			next++
		}
	}
	if next != after.LSN+1 {
		invariantf("volume %q went from lsn %d to %d, but the batch holds lsns %d..%d only up to %d in order",
			v.name, before.LSN, after.LSN, batch[0].LSN, batch[len(batch)-1].LSN, next-1)
	}
}

// checkAck (R3, R4): what an ack reports is the committed position and
// on disk: every byte of the file fsynced (caller holds v.mu). A batch's
// ack (batch) is one the primary counts; a handshake's position it counts
// only if it is on its history, which the replica cannot tell.
func (v *volume) checkAck(ack *pb.Ack, batch bool) {
	m := v.st.meta
	if ack.DurableLsn != m.LSN || ack.LastTerm != m.LastTerm || ack.AcceptedTerm != v.accepted {
		invariantf("volume %q acks lsn %d of term %d (accepted %d) but holds lsn %d of term %d (accepted %d)",
			v.name, ack.DurableLsn, ack.LastTerm, ack.AcceptedTerm, m.LSN, m.LastTerm, v.accepted)
	}
	if batch && (v.ackTerm != v.accepted || m.LSN >= v.ackLSN) {
		v.ackTerm, v.ackLSN = v.accepted, m.LSN
	}
	if v.st.syncf == nil {
		return // in memory
	}
	fi, err := v.st.syncf.Stat()
	if err != nil || fi.Size() != v.st.durableSize {
		invariantf("volume %q acks lsn %d but its file is %d bytes and %d of them fsynced (%v)", v.name, m.LSN, sizeOf(fi), v.st.durableSize, err)
	}
}

func sizeOf(fi os.FileInfo) int64 {
	if fi == nil {
		return -1
	}
	return fi.Size()
}

// checkInstall (R5): an install under the term a replica last acked
// under never takes it below what it acked (caller holds v.mu).
func (v *volume) checkInstall(term, lsn uint64) {
	if term == v.ackTerm && lsn < v.ackLSN {
		invariantf("volume %q: install at lsn %d under term %d, which it acked up to lsn %d", v.name, lsn, term, v.ackLSN)
	}
}

// checkAcked (P1, P2): a link's ack never goes back, Durable never
// decreases, is at most the head and at most the W-th highest ack
// (caller holds p.mu; acked is every link's position, sorted).
func (p *Primary) checkAcked(l *link, prev, lsn, durableBefore uint64, acked []uint64) {
	if lsn < prev {
		invariantf("replica %s acked lsn %d after lsn %d to term %d", l.addr, lsn, prev, p.term)
	}
	d := p.durable.Load()
	if d < durableBefore || d > p.head || d > max(acked[len(acked)-p.cfg.W], p.baseLSN) {
		invariantf("term %d: durable %d (was %d) with head %d and acks %v, w %d", p.term, d, durableBefore, p.head, acked, p.cfg.W)
	}
}

// checkAckTerm (P3): an ack counted by this primary was committed under
// its term, on its history.
func (p *Primary) checkAckTerm(addr string, ack *pb.Ack) {
	if (ack.AcceptedTerm != 0 && ack.AcceptedTerm != p.term) || ack.LastTerm > p.term {
		invariantf("term %d counts an ack of %s at lsn %d of term %d under accepted term %d", p.term, addr, ack.DurableLsn, ack.LastTerm, ack.AcceptedTerm)
	}
}

// checkBase (P4): a new primary's base is at or ahead of every granting
// replica's position — so it holds every acknowledged record — and W
// replicas hold it before the primary serves.
func (r *recovery) checkBase(answers []answer, best int, holders []bool) {
	n := 0
	for i, a := range answers {
		if holders[i] {
			n++
		}
		if best >= 0 && a.err == nil && a.resp.Granted && a.resp.Initialized && ahead(a.resp, answers[best].resp) {
			invariantf("volume %q recovered lsn %d of term %d, behind %s at lsn %d of term %d", r.cfg.Volume,
				answers[best].resp.Lsn, answers[best].resp.LastTerm, r.cfg.Replicas[i], a.resp.Lsn, a.resp.LastTerm)
		}
	}
	if n < r.cfg.W {
		invariantf("volume %q: a primary serves with %d replicas holding its base, w %d", r.cfg.Volume, n, r.cfg.W)
	}
}

// checkResync (P5): a snapshot installed on a replica reaches at least
// what that replica acked to this primary.
func (l *link) checkResync(snapLSN uint64) {
	l.p.mu.Lock()
	acked := l.acked
	l.p.mu.Unlock()
	if snapLSN < acked {
		invariantf("term %d: snapshot at lsn %d for %s, which acked lsn %d", l.p.term, snapLSN, l.addr, acked)
	}
}
