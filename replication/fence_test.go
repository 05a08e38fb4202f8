package replication

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
	pb "github.com/spoolfs/spoolfs/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestFencingIsAReasonNotAText: a replica's term refusals carry their
// reason as a structured detail, which survives wrapping and the wire; a
// message that merely reads like one is no fencing.
func TestFencingIsAReasonNotAText(t *testing.T) {
	if err := fencedError(1, 2); !isFenced(err) || isNotAcquired(err) || status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("fencedError: fenced %v, not acquired %v, code %v", isFenced(err), isNotAcquired(err), status.Code(err))
	}
	if err := checkTerm(3, 2); !isNotAcquired(err) || isFenced(err) {
		t.Fatalf("checkTerm(3, 2) = %v: not acquired %v", err, isNotAcquired(err))
	}
	wrapped := fmt.Errorf("ship handshake: %w", status.ErrorProto(status.Convert(fencedError(1, 2)).Proto()))
	if !isFenced(wrapped) {
		t.Fatalf("a fenced status received and wrapped is not seen as fenced: %v", wrapped)
	}
	lookalike := status.Error(codes.FailedPrecondition, "fenced: term 1 < accepted 2 (not acquired)")
	if isFenced(lookalike) || isNotAcquired(lookalike) || reasonOf(errors.New("fenced: x")) != "" {
		t.Fatal("a message that reads like a refusal was taken for one")
	}

	// Over the wire: an install under an old term.
	c := makeCluster(t, 1)
	cfg := c.primaryConfig(vol)
	cfg.W = 1
	c.openPrimary(cfg)
	cfg.NodeID = "second"
	c.openPrimary(cfg)
	hdr := &pb.SnapshotHeader{Volume: vol, Term: 1, LastTerm: 1, NodeId: cfg.holder}
	err := installSnapshot(context.Background(), c.rawClient(0), hdr, baseSnapshot(), nil)
	if !isFenced(err) {
		t.Fatalf("install under an old term: %v, want FENCED", err)
	}
}

// TestIdlePrimaryLearnsFencing: a primary that appends nothing learns
// within 2 s that a second one took the volume — the replicas end its
// Ship streams when they accept the newer term — also when one of its
// links is down and reconnecting at the time.
func TestIdlePrimaryLearnsFencing(t *testing.T) {
	for _, downLink := range []bool{false, true} {
		t.Run(fmt.Sprintf("link down %v", downLink), func(t *testing.T) {
			c := makeCluster(t, 3)
			cfg := c.primaryConfig(vol)
			cfg.MaxBackoff = 0 // the default
			a, ma := c.openPrimary(cfg)
			_, lsn := ma.writeFile(RootIno, "before", []byte("durable"))
			mustWait(t, a, lsn, 10*time.Second)
			if downLink {
				c.kill(2)
				testsupport.WaitFor(t, 10*time.Second, "link 2 down", func() bool { return !a.Status().Replicas[2].Connected })
				c.restart(2)
			}
			cfg.NodeID = "second"
			c.openPrimary(cfg)
			taken := time.Now()
			select {
			case <-a.Done():
			case <-time.After(2 * time.Second):
				t.Fatalf("the idle primary did not learn of the newer term within 2 s: %+v", a.Status())
			}
			if !a.Fenced() || !a.Status().Fenced {
				t.Fatalf("primary stopped but not fenced: %+v", a.Status())
			}
			t.Logf("fenced after %v", time.Since(taken).Round(time.Millisecond))
			if err := a.Wait(context.Background(), lsn+1); !errors.Is(err, ErrFenced) {
				t.Fatalf("wait after fencing: %v", err)
			}
		})
	}
}
