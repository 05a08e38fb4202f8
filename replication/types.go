package replication

// Imported as vmodel: this package has a type volume of its own (a
// replica's volume, server.go).
import vmodel "github.com/spoolfs/spoolfs/volume"

// The data model of a volume is package volume's, shared with fsactor
// (one definition on both sides of the seam: the actor's records enter the
// log as they are). These aliases keep the names this package uses.
type (
	// Op is the kind of mutation a Record carries (volume.Op; the
	// wire's pb.Op has the same numbers).
	Op = vmodel.Op
	// Attr is an inode's attributes. Times are Unix nanoseconds.
	Attr = vmodel.Attr
	// Record is one mutation of the volume, numbered by (Term, LSN); Term
	// is stamped by Primary.Append. A Record handed to Append is owned by
	// the Primary from then on and must not be changed.
	Record = vmodel.Record
	// Extent is one run of a file's content that is not a hole.
	Extent = vmodel.Extent
	// Snapshot is a whole volume at one LSN.
	Snapshot = vmodel.Snapshot
	// SnapInode is one inode of a Snapshot.
	SnapInode = vmodel.SnapInode
	// SnapDirent is one name in a directory of a Snapshot.
	SnapDirent = vmodel.SnapDirent
)

// The record kinds; see volume/record.go for what each one means.
const (
	OpCreate      = vmodel.OpCreate
	OpLink        = vmodel.OpLink
	OpUnlink      = vmodel.OpUnlink
	OpRmdir       = vmodel.OpRmdir
	OpRename      = vmodel.OpRename
	OpSetattr     = vmodel.OpSetattr
	OpSetXattr    = vmodel.OpSetXattr
	OpRemoveXattr = vmodel.OpRemoveXattr
	OpData        = vmodel.OpData
)

// recordSize is what a record weighs in the primary's log.
func recordSize(r *Record) int64 {
	return int64(96 + len(r.Name) + len(r.NewName) + len(r.Target) + len(r.XattrName) + len(r.Data) + 16*len(r.Extents) + 16*len(r.Ranges))
}

// snapDataBytes is the total file content of a snapshot.
func snapDataBytes(s *Snapshot) uint64 {
	var n uint64
	for i := range s.Inodes {
		n += uint64(len(s.Inodes[i].Data)) + uint64(s.Inodes[i].DataLen)
	}
	return n
}

// File type bits of st_mode.
const (
	modeType = 0o170000
	modeDir  = 0o040000
	modeReg  = 0o100000
	modeLnk  = 0o120000
	modeFifo = 0o010000
	modeChr  = 0o020000
	modeBlk  = 0o060000
	modeSock = 0o140000
)

func isDir(a Attr) bool { return a.Mode&modeType == modeDir }
func isReg(a Attr) bool { return a.Mode&modeType == modeReg }
func isLnk(a Attr) bool { return a.Mode&modeType == modeLnk }

// RootIno is the inode number of a volume's root directory.
const RootIno = 1
