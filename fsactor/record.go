package fsactor

import (
	"context"
	"errors"

	"github.com/spoolfs/spoolfs/volume"
)

// The data model of a volume is package volume's, shared with replication
// (one definition on both sides of the seam): these aliases keep the names
// the actor's code uses.
type (
	// RecordOp names the kind of mutation a Record carries (volume.Op).
	RecordOp = volume.Op
	// Attr is an inode's attributes as records and snapshots carry them.
	Attr = volume.Attr
	// Record is one mutation of the volume (volume.Record). The actor
	// leaves Term 0: replication stamps it.
	Record = volume.Record
	// Extent is one run of a file's content that is not a hole.
	Extent = volume.Extent
)

// The record kinds; see volume/record.go for what each one carries.
const (
	RecCreate      = volume.OpCreate
	RecLink        = volume.OpLink
	RecUnlink      = volume.OpUnlink
	RecRmdir       = volume.OpRmdir
	RecRename      = volume.OpRename
	RecSetattr     = volume.OpSetattr
	RecSetXattr    = volume.OpSetXattr
	RecRemoveXattr = volume.OpRemoveXattr
	RecData        = volume.OpData
)

// Sink receives the records of one volume and tells when they are durable.
// It is the seam between the actor and replication: node adapts a
// replication client to it; tests use fakes; --local uses DiscardSink.
type Sink interface {
	// Append takes the next record, in LSN order. It is called on the
	// actor's goroutine and must not block: a sink queues the record and
	// ships it elsewhere.
	Append(r *Record)
	// Durable reports the highest LSN stored on a write quorum (every
	// record at or below it is durable). Called on the actor: must not block.
	Durable() uint64
	// Wait blocks until lsn is durable, ctx ends, or the sink gives up.
	// It is called from task goroutines, never from the actor. Errors wrap
	// ErrNotDurable (→ EIO, data kept for later) or ErrFenced (→ EIO, and
	// the volume turns read-only).
	Wait(ctx context.Context, lsn uint64) error
}

// Sentinel errors a Sink returns, wrapped with context.
var (
	// ErrNotDurable: the write quorum did not acknowledge in time.
	ErrNotDurable = errors.New("fsactor: not durable")
	// ErrFenced: another primary holds a higher term; this one must stop
	// writing.
	ErrFenced = errors.New("fsactor: fenced by a newer term")
)

// DiscardSink makes every record durable at once: the sink of --local
// volumes, which live in memory alone.
type DiscardSink struct{ head uint64 }

// Append implements Sink.
func (s *DiscardSink) Append(r *Record) { s.head = r.LSN }

// Durable implements Sink.
func (s *DiscardSink) Durable() uint64 { return s.head }

// Wait implements Sink: everything is durable already.
func (s *DiscardSink) Wait(ctx context.Context, lsn uint64) error { return nil }
