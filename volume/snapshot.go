package volume

// Snapshot is a whole volume at one LSN: what recovery loads into a new
// actor and what a full resync ships to a replica that fell too far behind.
// Inode numbers are the volume's own and survive the round trip unchanged.
type Snapshot struct {
	// LSN is the last record reflected in the snapshot; the actor numbers
	// its next record LSN+1.
	LSN uint64
	// NextIno is the lowest inode number never used in the volume.
	NextIno uint64
	// Inodes lists every live inode, the root (inode 1) included.
	Inodes []SnapInode
	// Content reads the content of a file left out of a streamed snapshot
	// (DataLen > 0, Data nil): its extents and their bytes, as SnapInode
	// holds them. Release ends that snapshot and must be called once it
	// is no longer read. Both nil when every Data is there
	// (fsactor.Server.StreamSnapshot sets them).
	Content func(ino uint64) ([]Extent, []byte, error)
	Release func()
}

// SnapInode is one inode of a Snapshot.
type SnapInode struct {
	Ino     uint64
	Attr    Attr
	Target  string            // symlink target
	Data    []byte            // regular file content: the bytes of Extents one after another
	Extents []Extent          // where Data lies in the file, as in Record (nil: from offset 0); the rest reads as zeros
	DataLen int64             // a streamed snapshot's content bytes, read later through Snapshot.Content (Data nil)
	Xattrs  map[string][]byte // extended attributes
	Entries []SnapDirent      // directory entries, in readdir order
}

// SnapDirent is one name in a directory of a Snapshot.
type SnapDirent struct {
	Name string
	Ino  uint64
}
