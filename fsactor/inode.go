package fsactor

import (
	"math"
	"strings"
	"syscall"
	"time"

	"github.com/jacobsa/fuse"
	"github.com/jacobsa/fuse/fuseops"
	"github.com/jacobsa/fuse/fuseutil"
)

// rootIno is the inode number of the root directory of every volume.
const rootIno = fuseops.RootInodeID

// maxNlink bounds link counts so that uint32 never wraps (EMLINK beyond).
const maxNlink = math.MaxUint32 - 2

// inode is one file, directory, symlink or special file of the volume. Its
// kind is fixed at birth by attr.Mode; exactly one of dir, the file fields
// or target is in use (gVisor tmpfs and jacobsa memfs keep the same split).
type inode struct {
	ino uint64

	// attr holds the complete attributes, as records and snapshots carry
	// them.
	//
	// INVARIANT: attr.Mode&S_IFMT never changes.
	// INVARIANT: for a non-directory, attr.Nlink == the number of dentries
	// naming the inode.
	// INVARIANT: for a directory named by a dentry (and for the root),
	// attr.Nlink == 2 + its subdirectories; after rmdir, 0.
	// INVARIANT: for a symlink, attr.Size == len(target).
	// INVARIANT: for a regular file with a memfd, attr.Size == the memfd's
	// size; without one the content is attr.Size zero bytes.
	attr Attr

	// nlookup counts the kernel's references: every reply carrying an entry
	// adds one, FORGET and BATCH_FORGET take them back.
	//
	// The root's starts at 1 (the kernel's implicit reference, which it may
	// forget at unmount); the root is never freed whatever its count.
	nlookup uint64

	// openHandles counts the file and directory handles open on the inode.
	//
	// INVARIANT: openHandles == the number of State.handles naming ino.
	openHandles uint32

	// xattrs are the extended attributes.
	//
	// INVARIANT: sorted by name, names unique and non-empty.
	xattrs []xattr

	// dir is the directory part.
	//
	// INVARIANT: dir != nil iff the inode is a directory.
	dir *dir

	// content is where a regular file's bytes live (content.go): every
	// access to them goes through its State methods.
	content

	// dirty says the content changed since the last data record.
	//
	// INVARIANT: only regular files are dirty.
	dirty bool

	// dirtyRanges are the byte ranges written, punched or zeroed since the
	// last data record: the ranges the next one carries (dirty.go).
	//
	// INVARIANT: sorted, not empty, neither overlapping nor touching, at
	// most maxDirtyRanges, within attr.Size; non-empty only on a dirty
	// regular file.
	dirtyRanges []Extent

	// lastLSN is the last record about this inode (its create, data,
	// attributes, names): what a FLUSH or FSYNC of it waits for when it is
	// clean (DESIGN change in docs/architecture.md, "What close waits for").
	//
	// INVARIANT: lastLSN <= State.lsn.
	lastLSN uint64

	// target is a symlink's target.
	//
	// INVARIANT: target == "" for anything but a symlink.
	target string
}

func (in *inode) fileType() uint32 { return in.attr.Mode & syscall.S_IFMT }
func (in *inode) isDir() bool      { return in.fileType() == syscall.S_IFDIR }
func (in *inode) isReg() bool      { return in.fileType() == syscall.S_IFREG }
func (in *inode) isSymlink() bool  { return in.fileType() == syscall.S_IFLNK }

// direntType is the d_type of the inode in a directory listing.
func (in *inode) direntType() fuseutil.DirentType {
	switch in.fileType() {
	case syscall.S_IFDIR:
		return fuseutil.DT_Directory
	case syscall.S_IFREG:
		return fuseutil.DT_File
	case syscall.S_IFLNK:
		return fuseutil.DT_Link
	case syscall.S_IFIFO:
		return fuseutil.DT_FIFO
	case syscall.S_IFCHR:
		return fuseutil.DT_Char
	case syscall.S_IFBLK:
		return fuseutil.DT_Block
	case syscall.S_IFSOCK:
		return fuseutil.DT_Socket
	}
	return fuseutil.DT_Unknown
}

// fillAttributes converts the inode's attributes to jacobsa's form.
func (in *inode) fillAttributes(out *fuseops.InodeAttributes) {
	a := &in.attr
	*out = fuseops.InodeAttributes{
		Size:  a.Size,
		Nlink: a.Nlink,
		Mode:  fuse.ConvertFileMode(a.Mode),
		Rdev:  a.Rdev,
		Atime: time.Unix(0, a.Atime),
		Mtime: time.Unix(0, a.Mtime),
		Ctime: time.Unix(0, a.Ctime),
		Uid:   a.Uid,
		Gid:   a.Gid,
	}
}

// touchM stamps mtime and ctime (content or directory change).
func (in *inode) touchM(ns int64) {
	in.attr.Mtime = ns
	in.attr.Ctime = ns
}

// timeNs converts t to Unix nanoseconds, clamped to what int64 holds.
func timeNs(t time.Time) int64 {
	const maxSec = math.MaxInt64/int64(time.Second) - 1
	s := t.Unix()
	switch {
	case s > maxSec:
		return math.MaxInt64
	case s < -maxSec:
		return math.MinInt64
	}
	return t.UnixNano()
}

// getInode returns the live inode ino, or ENOENT.
func (st *State) getInode(ino uint64) (*inode, syscall.Errno) {
	in, ok := st.inodes[ino]
	if !ok {
		return nil, syscall.ENOENT
	}
	return in, 0
}

// getDir returns the live directory ino: ENOENT, or ENOTDIR.
func (st *State) getDir(ino uint64) (*inode, syscall.Errno) {
	in, e := st.getInode(ino)
	if e != 0 {
		return nil, e
	}
	if in.dir == nil {
		return nil, syscall.ENOTDIR
	}
	return in, 0
}

// fillEntry answers an entry for in and counts the kernel's new reference.
func (st *State) fillEntry(e *fuseops.ChildInodeEntry, in *inode, now time.Time) {
	in.nlookup++
	e.Child = fuseops.InodeID(in.ino)
	e.Generation = 0
	in.fillAttributes(&e.Attributes)
	e.AttributesExpiration = now.Add(st.cfg.AttrTimeout)
	e.EntryExpiration = now.Add(st.cfg.EntryTimeout)
}

// newInode makes an inode of the given Linux mode owned by the caller, as
// inode_init_owner does: in a setgid directory the group is the
// directory's, and a new subdirectory inherits S_ISGID.
func (st *State) newInode(mode uint32, c Caller, parent *inode, ns int64) *inode {
	in := &inode{ino: st.nextIno, content: noContent}
	st.nextIno++
	gid := c.Gid
	if parent.attr.Mode&syscall.S_ISGID != 0 {
		gid = parent.attr.Gid
		if mode&syscall.S_IFMT == syscall.S_IFDIR {
			mode |= syscall.S_ISGID
		}
	}
	in.attr = Attr{Mode: mode, Uid: c.Uid, Gid: gid, Nlink: 1, Atime: ns, Mtime: ns, Ctime: ns}
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		in.attr.Nlink = 2
		in.dir = newDir(parent.ino)
	}
	st.inodes[in.ino] = in
	return in
}

// maybeFree drops in once nothing refers to it: no dentry, no kernel
// reference, no open handle. The root stays forever. This is the one place
// inodes go, and their contents with them. A file with no name and no open
// handle can never be read again (the kernel opens by name only): its
// content goes at once, not at the kernel's FORGET, which comes whenever
// the kernel evicts the inode — so a delete makes room for the next write
// as on tmpfs (TestLimitsAnswerENOSPC).
func (st *State) maybeFree(in *inode) {
	if in.ino == rootIno || in.attr.Nlink > 0 || in.openHandles > 0 {
		return
	}
	st.dropContent(in)
	if in.nlookup == 0 {
		delete(st.inodes, in.ino)
	}
}

// newHandle opens a handle on in.
func (st *State) newHandle(in *inode, flags uint32, isDir bool) fuseops.HandleID {
	id := st.nextHandle
	st.nextHandle++
	st.handles[id] = handle{ino: in.ino, flags: flags, dir: isDir}
	in.openHandles++
	return fuseops.HandleID(id)
}

// releaseHandle closes a file or directory handle. A dirty file with a
// name ships its content (the reply does not wait for it: RELEASE has no
// caller to tell).
func (st *State) releaseHandle(id uint64) syscall.Errno {
	h, ok := st.handles[id]
	if !ok {
		return syscall.EBADF
	}
	delete(st.handles, id)
	st.eff.Released = h.ino
	in := st.inodes[h.ino]
	in.openHandles--
	var e syscall.Errno
	if in.dirty && in.attr.Nlink > 0 && !st.readOnly {
		e = st.shipData(in)
	}
	st.maybeFree(in)
	return e
}

// checkName validates a name to create, remove or rename.
func checkName(name string) syscall.Errno {
	if len(name) > 255 {
		return syscall.ENAMETOOLONG
	}
	if name == "" || name == "." || name == ".." || strings.IndexByte(name, '/') >= 0 ||
		strings.IndexByte(name, 0) >= 0 {
		return syscall.EINVAL
	}
	return 0
}
