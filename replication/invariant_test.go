//go:build invariants

package replication

import (
	"strings"
	"testing"

	pb "github.com/spoolfs/spoolfs/proto"
	"go.uber.org/zap"
)

// mustPanic runs f and fails unless it panics with a broken invariant
// whose message holds want.
func mustPanic(t *testing.T, want string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		msg, _ := r.(string)
		if !strings.Contains(msg, "invariant broken") || !strings.Contains(msg, want) {
			t.Fatalf("panic %v, want a broken invariant saying %q", r, want)
		}
	}()
	f()
}

// TestInvariantChecksFire: each check of invariant.go panics on the state
// it forbids (and the protocol tests, run with -tags invariants, show that
// the code never reaches one).
func TestInvariantChecksFire(t *testing.T) {
	st, err := openVolStore("", 0, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	v := &volume{name: "v", st: st, accepted: 3}
	st.meta = meta{LastTerm: 3, LSN: 5, Initialized: true}

	mustPanic(t, "granted term 2", func() { v.checkGrant(3, 2, "h") }) // R1: a term that went down
	mustPanic(t, "under accepted term 3", func() {                     // R2: applied above the accepted term
		v.checkApplied(meta{LastTerm: 3, LSN: 5}, meta{LastTerm: 4, LSN: 6}, []*Record{{LSN: 6, Term: 4}})
	})
	mustPanic(t, "only up to 6", func() { // R3: a position past a gap
		v.checkApplied(meta{LastTerm: 3, LSN: 5}, meta{LastTerm: 3, LSN: 8}, []*Record{{LSN: 6, Term: 3}, {LSN: 8, Term: 3}})
	})
	mustPanic(t, "acks lsn 6", func() { // R4: an ack past the committed position
		v.checkAck(&pb.Ack{DurableLsn: 6, LastTerm: 3, AcceptedTerm: 3}, true)
	})
	v.checkAck(&pb.Ack{DurableLsn: 5, LastTerm: 3, AcceptedTerm: 3, Initialized: true}, true)
	mustPanic(t, "acked up to lsn 5", func() { v.checkInstall(3, 4) }) // R5
	v.checkInstall(4, 1)                                               // another term may replace what no quorum held

	p := &Primary{term: 3, baseLSN: 2, head: 10, cfg: PrimaryConfig{W: 2}}
	l := &link{p: p, addr: "r0"}
	p.durable.Store(6)
	mustPanic(t, "acked lsn 4 after lsn 5", func() { p.checkAcked(l, 5, 4, 6, []uint64{4, 6, 7}) })                      // P2
	mustPanic(t, "durable 6 (was 7)", func() { p.checkAcked(l, 4, 6, 7, []uint64{6, 6, 7}) })                            // P1: went down
	mustPanic(t, "durable 6", func() { p.checkAcked(l, 4, 5, 5, []uint64{4, 5, 7}) })                                    // P1: above the W-th ack
	mustPanic(t, "counts an ack", func() { p.checkAckTerm("r0", &pb.Ack{DurableLsn: 7, LastTerm: 3, AcceptedTerm: 4}) }) // P3

	r := &recovery{cfg: PrimaryConfig{Volume: "v", W: 2, Replicas: []string{"r0", "r1", "r2"}}}
	answers := []answer{
		{resp: &pb.AcquireResponse{Granted: true, Initialized: true, LastTerm: 2, Lsn: 9}},
		{resp: &pb.AcquireResponse{Granted: true, Initialized: true, LastTerm: 2, Lsn: 7}},
	}
	mustPanic(t, "behind r0", func() { r.checkBase(answers, 1, []bool{true, true}) })        // P4: base behind a grant
	mustPanic(t, "with 1 replicas", func() { r.checkBase(answers, 0, []bool{true, false}) }) // P4: too few hold it

	l.acked = 8
	mustPanic(t, "which acked lsn 8", func() { l.checkResync(7) }) // P5
}
