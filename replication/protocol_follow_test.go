package replication

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// A follower in TestProtocolRandom (half the schedules): it follows the
// volume through every fault the schedule makes, and
//   - each batch it applies leaves it in the state a primary wrote at that
//     batch's last (term, lsn) (the oracle's history), and each batch
//     starts at the lsn after its state (fakeTarget);
//   - its applied (term, lsn) never goes back (Follower.setApplied panics
//     under -tags invariants);
//   - after the final recovery and write, it reaches the final primary's
//     position and shows exactly that state.

// protoFollower is a schedule's follower and the target it applies to.
type protoFollower struct {
	f      *Follower
	target *fakeTarget
}

// startFollower opens the schedule's follower (node f1, through faultnet)
// and runs it until teardown.
func (s *schedule) startFollower(t testing.TB) error {
	bo := backoff.Config{BaseDelay: 2 * time.Millisecond, Multiplier: 1.6, MaxDelay: 20 * time.Millisecond}
	cfg := FollowerConfig{Volume: protoVolume, NodeID: "f1", Replicas: []string{"passthrough:///r0", "passthrough:///r1", "passthrough:///r2"},
		Log: zap.NewNop(), CallTimeout: 300 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		DeadAfter: 6 * protoHeartbeat,
		DialOptions: []grpc.DialOption{
			grpc.WithContextDialer(s.net.Dialer("f1")),
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: 300 * time.Millisecond}),
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f, snap, err := OpenFollower(ctx, cfg)
	if err != nil {
		return fmt.Errorf("open the follower: %w", err)
	}
	target := newFakeTarget(t, snap)
	target.acrossTerms, target.report = true, s.fail
	target.check = s.followerState
	s.fol = &protoFollower{f: f, target: target}
	s.note("f1: following from lsn %d", snap.LSN)
	go f.Run(target)
	return nil
}

// protoHeartbeat is the replicas' Watch heartbeat in TestProtocolRandom.
const protoHeartbeat = 50 * time.Millisecond

// followerState checks the follower's state after a batch against the
// history of the batch's last record.
func (s *schedule) followerState(last *Record, st *volStore) {
	snap, _, err := st.readSnapshot()
	if err != nil {
		s.fail(fmt.Errorf("follower: read its state: %w", err))
		return
	}
	got, err := spoolOf(snap)
	if err != nil {
		s.fail(fmt.Errorf("follower: %w", err))
		return
	}
	s.o.mu.Lock()
	want, err := s.o.stateAt(last.Term, last.LSN)
	s.o.mu.Unlock()
	if err != nil {
		s.fail(fmt.Errorf("follower applied lsn %d of term %d: %w", last.LSN, last.Term, err))
		return
	}
	if !maps.Equal(got, want) {
		s.fail(fmt.Errorf("follower at lsn %d of term %d shows %v, its primary wrote %v", last.LSN, last.Term, got, want))
	}
}

// followerCaughtUp waits, once everything healed and the final primary
// wrote, for the follower to reach the final primary's position, and
// checks its state there.
func (s *schedule) followerCaughtUp() error {
	if s.fol == nil {
		return nil
	}
	s.mu.Lock()
	w := s.writers[len(s.writers)-1]
	s.mu.Unlock()
	w.mu.Lock()
	term, lsn := w.p.Term(), w.lsn
	w.mu.Unlock()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := s.fol.f.Status()
		if st.Term == term && st.LSN == lsn {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("follower never reached the final lsn %d of term %d: %+v", lsn, term, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.note("f1: at the final lsn %d of term %d", lsn, term)
	_, snap := s.fol.target.state()
	got, err := spoolOf(snap)
	if err != nil {
		return fmt.Errorf("follower: %w", err)
	}
	s.o.mu.Lock()
	want, err := s.o.stateAt(term, lsn)
	s.o.mu.Unlock()
	if err != nil {
		return err
	}
	if !maps.Equal(got, want) {
		return fmt.Errorf("follower at the final lsn %d of term %d shows %v, want %v", lsn, term, got, want)
	}
	return nil
}
