package replication

// Op is the kind of mutation a Record carries. The values are
// fsactor.RecordOp's one to one (and the wire's pb.Op).
type Op uint8

// The record kinds; see fsactor/record.go for what each one means.
const (
	OpCreate      Op = 1
	OpLink        Op = 2
	OpUnlink      Op = 3
	OpRmdir       Op = 4
	OpRename      Op = 5
	OpSetattr     Op = 6
	OpSetXattr    Op = 7
	OpRemoveXattr Op = 8
	OpData        Op = 9
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

// Attr mirrors fsactor.Attr. Times are Unix nanoseconds.
type Attr struct {
	Mode  uint32 // st_mode: file type bits and permission bits
	Uid   uint32
	Gid   uint32
	Nlink uint32
	Rdev  uint32
	Size  uint64
	Atime int64
	Mtime int64
	Ctime int64
}

// Record mirrors fsactor.Record plus the term of the primary that wrote
// it (stamped by Primary.Append). A Record handed to Append is owned by the
// Primary from then on and must not be changed.
type Record struct {
	Term      uint64
	LSN       uint64
	Op        Op
	Ino       uint64
	Parent    uint64
	Name      string
	NewParent uint64
	NewName   string
	Replaced  uint64
	Attr      Attr
	Target    string
	XattrName string
	// Data is an xattr value (OpSetXattr) or a file's content (OpData):
	// the bytes of Extents one after another.
	Data []byte
	// Extents places Data in the file (OpData): the runs of the content
	// that are not holes, sorted and not overlapping, within Attr.Size.
	// Everything else up to the size reads as zeros. Nil means one run
	// from offset 0 (a file without holes below its last data). A data
	// record states the file's whole content (replaces it).
	Extents []Extent
}

// Extent is one run of a file's content that is not a hole: Len bytes at
// offset Off, taken in turn from the Data that carries the extents.
type Extent struct {
	Off, Len uint64
}

// size is what a record weighs in the primary's log.
func (r *Record) size() int64 {
	return int64(96 + len(r.Name) + len(r.NewName) + len(r.Target) + len(r.XattrName) + len(r.Data) + 16*len(r.Extents))
}

// Snapshot mirrors fsactor.Snapshot: a whole volume at one LSN.
type Snapshot struct {
	LSN     uint64
	NextIno uint64
	Inodes  []SnapInode
	// Content reads the content of a file whose Data is left out (DataLen
	// > 0): its extents and their bytes (as SnapInode's). A streamed
	// snapshot of the actor, sent a file at a time so that the volume is
	// not copied whole into memory. Nil when every Data is there.
	Content func(ino uint64) ([]Extent, []byte, error)
	// Release, if set, must be called once the snapshot is no longer read.
	Release func()
}

// SnapInode mirrors fsactor.SnapInode.
type SnapInode struct {
	Ino     uint64
	Attr    Attr
	Target  string
	Data    []byte   // a regular file's content: the bytes of Extents
	Extents []Extent // where Data lies in the file, as Record.Extents (nil: from 0)
	DataLen int64    // content left out of Data, read through Snapshot.Content
	Xattrs  map[string][]byte
	Entries []SnapDirent
}

// SnapDirent mirrors fsactor.SnapDirent.
type SnapDirent struct {
	Name string
	Ino  uint64
}

// dataBytes is the total file content of the snapshot.
func (s *Snapshot) dataBytes() uint64 {
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
