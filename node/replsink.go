package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/spoolfs/spoolfs/fsactor"
	"github.com/spoolfs/spoolfs/replication"
)

// replSink adapts a replication.Primary to fsactor.Sink: the actor's
// records go to the primary, the primary's errors come back as fsactor's
// sentinels (ErrFenced → fsactor.ErrFenced, anything else →
// fsactor.ErrNotDurable), both wrapped around the cause.
type replSink struct {
	p *replication.Primary
}

// NewReplSink is the fsactor.Sink of a replicated volume: pass it to
// fsactor.NewServer with the snapshot OpenPrimary returned (a
// volume.Snapshot, which both packages share).
func NewReplSink(p *replication.Primary) *replSink { return &replSink{p: p} }

// Append implements fsactor.Sink (on the actor, never blocks). The record
// is handed over as it is: fsactor.Record and replication.Record are both
// volume.Record, and the actor never touches it again.
func (s *replSink) Append(r *fsactor.Record) { s.p.Append(r) }

// Durable implements fsactor.Sink.
func (s *replSink) Durable() uint64 { return s.p.Durable() }

// Wait implements fsactor.Sink.
func (s *replSink) Wait(ctx context.Context, lsn uint64) error {
	return sinkError(s.p.Wait(ctx, lsn))
}

// sinkError adapts replication's errors to the Sink's contract: it maps
// them to fsactor's sentinels (replication.ErrFenced → fsactor.ErrFenced,
// anything else → fsactor.ErrNotDurable), wrapped around the cause. It maps
// errors to sentinels, never to errnos: the one errno mapping is fsactor's
// (fsactor/errno.go), which answers EIO for both sentinels whatever they
// wrap. fsactor does not import replication, hence this adapter.
func sinkError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, replication.ErrFenced):
		return fmt.Errorf("%w: %w", fsactor.ErrFenced, err)
	default:
		return fmt.Errorf("%w: %w", fsactor.ErrNotDurable, err)
	}
}

// ActorSnapshots is the SnapshotSource a primary resyncs replicas from: a
// streamed snapshot of the actor (fsactor/snapshot_stream.go), each file's
// content read when it is sent, so that a resync neither stops the actor
// for the whole volume nor copies it whole into memory.
func ActorSnapshots(srv *fsactor.Server) replication.SnapshotSource {
	return func(ctx context.Context) (*replication.Snapshot, error) {
		snap, err := srv.StreamSnapshot(ctx)
		if err != nil {
			return nil, fmt.Errorf("snapshot of the actor: %w", err)
		}
		return snap, nil
	}
}
