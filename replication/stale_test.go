package replication

import (
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoolfs/spoolfs/internal/testsupport"
	pb "github.com/spoolfs/spoolfs/proto"
	"google.golang.org/grpc"
)

// lateInstall is an Install stream whose chunks all arrive at once but
// whose end arrives only when release is closed: an install sent on a
// connection the primary gave up on, delivered after it reconnected.
type lateInstall struct {
	grpc.ServerStream
	chunks  []*pb.SnapshotChunk
	read    atomic.Int64
	release chan struct{}
}

func (s *lateInstall) Context() context.Context { return context.Background() }

func (s *lateInstall) Recv() (*pb.SnapshotChunk, error) {
	if i := s.read.Load(); int(i) < len(s.chunks) {
		s.read.Add(1)
		return s.chunks[i], nil
	}
	<-s.release
	return nil, io.EOF
}

func (s *lateInstall) SendAndClose(*pb.InstallResponse) error { return nil }

// TestStaleInstallCannotUndoAcks (found while writing TestProtocolRandom's
// stranded connections, which can deliver it; R5 in invariant.go): an install under the current term that arrives after the
// replica acknowledged records past it must not take the replica back.
// The primary counted those acks; going back would lose them.
func TestStaleInstallCannotUndoAcks(t *testing.T) {
	c := makeCluster(t, 1)
	cl := setupVolume(t, c, 0, 1) // term 1, holder "raw", baseSnapshot at lsn 0
	late := &lateInstall{release: make(chan struct{})}
	hdr := &pb.SnapshotHeader{Volume: vol, Term: 1, LastTerm: 1, NodeId: "raw"}
	if err := sendSnapshot(hdr, baseSnapshot(), func(ch *pb.SnapshotChunk) error {
		late.chunks = append(late.chunks, ch)
		return nil
	}, nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.server(0).Install(late) }()
	testsupport.WaitFor(t, 10*time.Second, "the late install's body read", func() bool { return int(late.read.Load()) == len(late.chunks) })

	s, _ := openShip(t, cl, 1)
	sendRecs(t, s, createRec(1, 1, 4, 1, "a"), createRec(1, 2, 5, 1, "b"))
	for {
		ack, err := s.Recv()
		if err != nil {
			t.Fatalf("ack: %v", err)
		}
		if ack.DurableLsn == 2 {
			break
		}
	}
	close(late.release)
	err := <-done
	if st := c.status(0, vol); st.Lsn != 2 || st.LastTerm != 1 {
		t.Fatalf("the replica acknowledged lsn 2, then a late install (answered %v) took it to lsn %d of term %d", err, st.Lsn, st.LastTerm)
	}
	if !isRejection(err) {
		t.Fatalf("late install answered %v, want a rejection", err)
	}
}
