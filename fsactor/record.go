package fsactor

import (
	"context"
	"errors"
)

// RecordOp names the kind of mutation a Record carries.
type RecordOp uint8

// The record kinds. Values are part of the wire contract with replication
// (node converts them one to one): never renumber, only append.
const (
	// RecCreate makes a new inode Ino and links it as Parent/Name.
	// Attr holds the complete attributes of the new inode (its Mode says
	// regular file, directory, fifo, device or symlink); Target holds a
	// symlink's target.
	RecCreate RecordOp = 1
	// RecLink adds the dentry Parent/Name for the existing inode Ino.
	// Attr holds Ino's attributes after the change (nlink, ctime).
	RecLink RecordOp = 2
	// RecUnlink removes the dentry Parent/Name, which names Ino (a
	// non-directory). Attr holds Ino's attributes after the change; when
	// Attr.Nlink is 0 the inode is gone from the volume.
	RecUnlink RecordOp = 3
	// RecRmdir removes the empty directory Ino named Parent/Name.
	RecRmdir RecordOp = 4
	// RecRename moves Parent/Name (inode Ino) to NewParent/NewName. If
	// NewName named another inode (Replaced != 0), that dentry is removed
	// first (an empty directory is removed; a file loses one link).
	RecRename RecordOp = 5
	// RecSetattr sets the attributes of Ino to Attr (complete, after the
	// change). A size change truncates or extends the content.
	RecSetattr RecordOp = 6
	// RecSetXattr sets the extended attribute XattrName of Ino to Data.
	RecSetXattr RecordOp = 7
	// RecRemoveXattr removes the extended attribute XattrName of Ino.
	RecRemoveXattr RecordOp = 8
	// RecData replaces the whole content of regular file Ino with Data
	// placed by Extents (holes are not carried); Attr holds the
	// attributes after the change (size, mtime, ctime).
	RecData RecordOp = 9
)

var recordOpNames = [...]string{
	RecCreate: "create", RecLink: "link", RecUnlink: "unlink", RecRmdir: "rmdir",
	RecRename: "rename", RecSetattr: "setattr", RecSetXattr: "setxattr",
	RecRemoveXattr: "removexattr", RecData: "data",
}

func (o RecordOp) String() string {
	if int(o) < len(recordOpNames) && recordOpNames[o] != "" {
		return recordOpNames[o]
	}
	return "unknown"
}

// Attr is the volume's own view of an inode's attributes: what a replica
// stores and what recovery restores. Times are Unix nanoseconds.
type Attr struct {
	Mode  uint32 // Linux st_mode: file type bits and permission bits (with suid, sgid, sticky)
	Uid   uint32
	Gid   uint32
	Nlink uint32
	Rdev  uint32
	Size  uint64
	Atime int64
	Mtime int64
	Ctime int64
}

// Record is one mutation of a volume. The actor numbers records with
// consecutive LSNs starting after the snapshot it was built from; the term
// belongs to the replication layer, which stamps it when shipping.
//
// A Record handed to a Sink is immutable: the actor never touches it again,
// so the sink may keep it and read it from any goroutine.
type Record struct {
	LSN       uint64
	Op        RecordOp
	Ino       uint64 // the inode the record is about
	Parent    uint64 // directory of Name
	Name      string
	NewParent uint64 // rename only
	NewName   string // rename only
	Replaced  uint64 // rename only: inode that NewName named before, or 0
	Attr      Attr   // attributes of Ino after the change (see each op)
	Target    string // symlink target (create of a symlink)
	XattrName string
	Data      []byte // file content (RecData: the bytes of Extents) or xattr value (RecSetXattr)
	// Extents places Data in the file (RecData): the runs of its content
	// that are not holes, sorted, not overlapping, within Attr.Size;
	// everything else reads as zeros. Nil: Data starts at offset 0 (a
	// file without holes below its last data).
	Extents []Extent
}

// Extent is one run of a file's content that is not a hole: Len bytes at
// Off. A content is a list of extents and the bytes of each in turn.
type Extent struct {
	Off, Len uint64
}

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
