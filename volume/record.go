package volume

// Op names the kind of mutation a Record carries. Values are part of the
// wire contract (proto's Op has the same numbers): never renumber, only
// append.
type Op uint8

// The record kinds.
const (
	// OpCreate makes a new inode Ino and links it as Parent/Name.
	// Attr holds the complete attributes of the new inode (its Mode says
	// regular file, directory, fifo, device or symlink); Target holds a
	// symlink's target.
	OpCreate Op = 1
	// OpLink adds the dentry Parent/Name for the existing inode Ino.
	// Attr holds Ino's attributes after the change (nlink, ctime).
	OpLink Op = 2
	// OpUnlink removes the dentry Parent/Name, which names Ino (a
	// non-directory). Attr holds Ino's attributes after the change; when
	// Attr.Nlink is 0 the inode is gone from the volume.
	OpUnlink Op = 3
	// OpRmdir removes the empty directory Ino named Parent/Name.
	OpRmdir Op = 4
	// OpRename moves Parent/Name (inode Ino) to NewParent/NewName. If
	// NewName named another inode (Replaced != 0), that dentry is removed
	// first (an empty directory is removed; a file loses one link).
	OpRename Op = 5
	// OpSetattr sets the attributes of Ino to Attr (complete, after the
	// change). A size change truncates or extends the content.
	OpSetattr Op = 6
	// OpSetXattr sets the extended attribute XattrName of Ino to Data.
	OpSetXattr Op = 7
	// OpRemoveXattr removes the extended attribute XattrName of Ino.
	OpRemoveXattr Op = 8
	// OpData replaces the whole content of regular file Ino with Data
	// placed by Extents (holes are not carried); Attr holds the
	// attributes after the change (size, mtime, ctime). A partial data
	// record (Record.Partial) replaces only the bytes of its Ranges.
	OpData Op = 9
)

var opNames = [...]string{
	OpCreate: "create", OpLink: "link", OpUnlink: "unlink", OpRmdir: "rmdir",
	OpRename: "rename", OpSetattr: "setattr", OpSetXattr: "setxattr",
	OpRemoveXattr: "removexattr", OpData: "data",
}

func (o Op) String() string {
	if int(o) < len(opNames) && opNames[o] != "" {
		return opNames[o]
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

// Record is one mutation of a volume, numbered by (Term, LSN). The actor
// numbers records with consecutive LSNs starting after the snapshot it
// was built from; the term belongs to replication, which stamps it when
// the record enters its log (replication.Primary.Append).
//
// A Record handed over by the actor is the receiver's: the actor never
// touches it again, so it may be kept and read from any goroutine.
type Record struct {
	Term uint64
	LSN  uint64
	// Req is the id of the FUSE request whose step emitted the record
	// (the kernel's unique id, the access log's "req"): a primary's
	// access-log line and a replica's "batch durable" line name the same
	// number, so one message can be followed across hosts
	// (docs/operations.md, "Following one message"). 0 for records of
	// internal events (a remote removal) and from primaries that predate
	// it. It travels with the record to the replicas and is never stored:
	// it names who asked, not what changed.
	Req       uint64
	Op        Op
	Ino       uint64 // the inode the record is about
	Parent    uint64 // directory of Name
	Name      string
	NewParent uint64 // rename only
	NewName   string // rename only
	Replaced  uint64 // rename only: inode that NewName named before, or 0
	Attr      Attr   // attributes of Ino after the change (see each op)
	Target    string // symlink target (create of a symlink)
	XattrName string
	// Data is an xattr value (OpSetXattr) or a file's content (OpData):
	// the bytes of Extents one after another.
	Data []byte
	// Extents places Data in the file (OpData): the runs of its content
	// that are not holes, sorted, not overlapping, within Attr.Size;
	// everything else reads as zeros. Nil: Data starts at offset 0 (a
	// file without holes below its last data). A data record that is not
	// Partial states the file's whole content (replaces it).
	Extents []Extent
	// Partial (OpData only) says the record carries only the byte ranges
	// of the file that changed since its previous data record (Ranges):
	// applying it sets every byte inside Ranges to the primary's — Data
	// placed by Extents, which lie inside Ranges, and zeros (holes) for
	// the rest of each range — leaves every byte outside them as it was,
	// then gives the file Attr.Size (a shrink cuts, a growth reads as
	// zeros). Sizes changed between data records travel as setattr
	// records, so applying every record in order is exact. Only a
	// receiver that has applied every record before it may apply one
	// (a replica in LSN order; a snapshot's base is the content at its
	// LSN, which the ranges of the records after it then patch).
	Partial bool
	// Ranges are the byte ranges a Partial data record covers: sorted, not
	// empty, neither overlapping nor touching (merged), within Attr.Size.
	// Empty in a Partial record: only the attributes change. Nil unless
	// Partial.
	Ranges []Extent
	// Content, when set, is the content of a data record not read yet:
	// the actor hands a view of the file's memfd as it is at this LSN
	// instead of copying it (Data and Extents are then empty). Whoever
	// keeps the record reads it off the actor — Data, Extents =
	// Content.Read() — then calls Content.Release and sets Content to
	// nil; a record is never shipped or stored while Content is set.
	Content Content
}

// Content is a file's content frozen at one LSN, read off the actor's
// goroutine. Read and Release are safe from any goroutine; Release must be
// called exactly once, after the last Read (or instead of it), and lets
// the actor change the file in place again.
type Content interface {
	// Read returns the content's extents and their bytes, as
	// Record.Extents and Data hold them: for a Partial record, only
	// those inside its Ranges.
	Read() ([]Extent, []byte, error)
	// Release ends the view.
	Release()
}

// Extent is one run of a file's content that is not a hole: Len bytes at
// Off. A content is a list of extents and the bytes of each in turn.
type Extent struct {
	Off, Len uint64
}
