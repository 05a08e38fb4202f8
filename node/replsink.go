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
// fsactor.NewServer with the snapshot OpenPrimary returned.
func NewReplSink(p *replication.Primary) *replSink { return &replSink{p: p} }

// Append implements fsactor.Sink (on the actor: copies the fields, never
// blocks; Data is shared, the actor never changes it again).
func (s *replSink) Append(r *fsactor.Record) { s.p.Append(recordToRepl(r)) }

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

func recordToRepl(r *fsactor.Record) *replication.Record {
	return &replication.Record{
		LSN: r.LSN, Op: replication.Op(r.Op), Ino: r.Ino, Parent: r.Parent, Name: r.Name,
		NewParent: r.NewParent, NewName: r.NewName, Replaced: r.Replaced,
		Attr: replication.Attr(r.Attr), Target: r.Target, XattrName: r.XattrName, Data: r.Data,
		Extents: convertExtents[replication.Extent](r.Extents),
	}
}

// convertExtents copies extents between fsactor's and replication's
// mirror types (nil stays nil: the content starts at offset 0).
func convertExtents[To, From ~struct{ Off, Len uint64 }](in []From) []To {
	if in == nil {
		return nil
	}
	out := make([]To, len(in))
	for i, e := range in {
		out[i] = To(e)
	}
	return out
}

// SnapshotToActor converts what recovery returns into what
// fsactor.NewServer starts from.
func SnapshotToActor(s *replication.Snapshot) *fsactor.Snapshot {
	out := &fsactor.Snapshot{LSN: s.LSN, NextIno: s.NextIno, Inodes: make([]fsactor.SnapInode, len(s.Inodes))}
	for i, in := range s.Inodes {
		o := fsactor.SnapInode{Ino: in.Ino, Attr: fsactor.Attr(in.Attr), Target: in.Target, Data: in.Data,
			Extents: convertExtents[fsactor.Extent](in.Extents), Xattrs: in.Xattrs}
		if in.Entries != nil {
			o.Entries = make([]fsactor.SnapDirent, len(in.Entries))
			for j, e := range in.Entries {
				o.Entries[j] = fsactor.SnapDirent(e)
			}
		}
		out.Inodes[i] = o
	}
	return out
}

// SnapshotToRepl converts the actor's snapshot for a replica resync.
func SnapshotToRepl(s *fsactor.Snapshot) *replication.Snapshot {
	out := &replication.Snapshot{LSN: s.LSN, NextIno: s.NextIno, Inodes: make([]replication.SnapInode, len(s.Inodes)),
		Release: s.Release}
	if s.Content != nil {
		out.Content = func(ino uint64) ([]replication.Extent, []byte, error) {
			exts, data, err := s.Content(ino)
			return convertExtents[replication.Extent](exts), data, err
		}
	}
	for i, in := range s.Inodes {
		o := replication.SnapInode{Ino: in.Ino, Attr: replication.Attr(in.Attr), Target: in.Target, Data: in.Data,
			Extents: convertExtents[replication.Extent](in.Extents), DataLen: in.DataLen, Xattrs: in.Xattrs}
		if in.Entries != nil {
			o.Entries = make([]replication.SnapDirent, len(in.Entries))
			for j, e := range in.Entries {
				o.Entries[j] = replication.SnapDirent(e)
			}
		}
		out.Inodes[i] = o
	}
	return out
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
		return SnapshotToRepl(snap), nil
	}
}
