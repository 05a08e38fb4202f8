package fsactor

import (
	"syscall"
	"time"

	"github.com/jacobsa/fuse"
	"github.com/jacobsa/fuse/fuseops"
	"github.com/jacobsa/fuse/fuseutil"
)

// lookUp answers LOOKUP. A miss is a negative entry the kernel caches for
// EntryTimeout (one LOOKUP less next time), or ENOENT when that is 0.
func (st *State) lookUp(o *fuseops.LookUpInodeOp, now time.Time) syscall.Errno {
	p, e := st.getDir(uint64(o.Parent))
	if e != 0 {
		return e
	}
	var ino uint64
	switch o.Name {
	case ".":
		ino = p.ino
	case "..":
		ino = p.dir.parent
	default:
		if len(o.Name) > 255 {
			return syscall.ENAMETOOLONG
		}
		ino = p.dir.lookup(o.Name)
	}
	if ino == 0 {
		if st.cfg.EntryTimeout <= 0 {
			return syscall.ENOENT
		}
		o.Entry = fuseops.ChildInodeEntry{EntryExpiration: now.Add(st.cfg.EntryTimeout)}
		return 0
	}
	st.fillEntry(&o.Entry, st.inodes[ino], now)
	return 0
}

// checkCreate validates making parent/name: the parent is a live
// directory, the name is free and the volume has room for an inode.
func (st *State) checkCreate(parent uint64, name string, isDir bool) (*inode, syscall.Errno) {
	if e := st.writable(); e != 0 {
		return nil, e
	}
	if e := checkName(name); e != 0 {
		return nil, e
	}
	p, e := st.getDir(parent)
	if e != 0 {
		return nil, e
	}
	switch {
	case p.attr.Nlink == 0:
		return nil, syscall.ENOENT // removed directory
	case p.dir.lookup(name) != 0:
		return nil, syscall.EEXIST
	case uint64(len(st.inodes)) >= st.maxInodes:
		return nil, st.limitHit(LimitInodes)
	case isDir && p.attr.Nlink >= maxNlink:
		return nil, syscall.EMLINK
	}
	return p, 0
}

// create makes a new inode of mode and links it as p/name, emitting its
// record. The caller validated with checkCreate.
func (st *State) create(p *inode, name string, mode uint32, c Caller, now time.Time,
	prep func(*inode)) (*inode, uint64) {
	ns := now.UnixNano()
	in := st.newInode(mode, c, p, ns)
	if prep != nil {
		prep(in)
	}
	p.dir.add(name, in.ino, in.isDir())
	syncDirNlink(p)
	p.touchM(ns)
	lsn := st.emit(in, &Record{Op: RecCreate, Ino: in.ino, Parent: p.ino, Name: name,
		Attr: in.attr, Target: in.target})
	return in, lsn
}

// syncDirNlink sets a linked directory's link count: ".", its name, and
// each subdirectory's "..".
func syncDirNlink(d *inode) {
	if d.attr.Nlink > 0 {
		d.attr.Nlink = 2 + d.dir.subdirs
	}
}

func (st *State) mkDir(o *fuseops.MkDirOp, c Caller, now time.Time) (uint64, syscall.Errno) {
	p, e := st.checkCreate(uint64(o.Parent), o.Name, true)
	if e != 0 {
		return 0, e
	}
	mode := syscall.S_IFDIR | fuse.ConvertGoMode(o.Mode)&0o7777
	in, lsn := st.create(p, o.Name, mode, c, now, nil)
	st.fillEntry(&o.Entry, in, now)
	return st.mutationWait(lsn), 0
}

func (st *State) mkNode(o *fuseops.MkNodeOp, c Caller, now time.Time) (uint64, syscall.Errno) {
	mode := fuse.ConvertGoMode(o.Mode)
	var rdev uint32
	switch mode & syscall.S_IFMT {
	case syscall.S_IFCHR, syscall.S_IFBLK:
		rdev = o.Rdev
	case syscall.S_IFREG, syscall.S_IFIFO, syscall.S_IFSOCK:
	default:
		return 0, syscall.EINVAL
	}
	p, e := st.checkCreate(uint64(o.Parent), o.Name, false)
	if e != 0 {
		return 0, e
	}
	in, lsn := st.create(p, o.Name, mode, c, now, func(in *inode) { in.attr.Rdev = rdev })
	st.fillEntry(&o.Entry, in, now)
	return st.mutationWait(lsn), 0
}

func (st *State) createFile(o *fuseops.CreateFileOp, c Caller, now time.Time) (uint64, syscall.Errno) {
	p, e := st.checkCreate(uint64(o.Parent), o.Name, false)
	if e != 0 {
		return 0, e
	}
	mode := syscall.S_IFREG | fuse.ConvertGoMode(o.Mode)&0o7777
	in, lsn := st.create(p, o.Name, mode, c, now, nil)
	st.fillEntry(&o.Entry, in, now)
	o.Handle = st.newHandle(in, uint32(o.OpenFlags), false)
	return st.mutationWait(lsn), 0
}

func (st *State) createSymlink(o *fuseops.CreateSymlinkOp, c Caller, now time.Time) (uint64, syscall.Errno) {
	if len(o.Target) == 0 {
		return 0, syscall.ENOENT
	}
	if len(o.Target) >= 4096 {
		return 0, syscall.ENAMETOOLONG
	}
	p, e := st.checkCreate(uint64(o.Parent), o.Name, false)
	if e != 0 {
		return 0, e
	}
	in, lsn := st.create(p, o.Name, syscall.S_IFLNK|0o777, c, now, func(in *inode) {
		in.target = o.Target
		in.attr.Size = uint64(len(o.Target))
	})
	st.fillEntry(&o.Entry, in, now)
	return st.mutationWait(lsn), 0
}

func (st *State) readSymlink(o *fuseops.ReadSymlinkOp) syscall.Errno {
	in, e := st.getInode(uint64(o.Inode))
	if e != 0 {
		return e
	}
	if !in.isSymlink() {
		return syscall.EINVAL
	}
	o.Target = in.target
	return 0
}

func (st *State) openDir(o *fuseops.OpenDirOp) syscall.Errno {
	d, e := st.getDir(uint64(o.Inode))
	if e != 0 {
		return e
	}
	o.Handle = st.newHandle(d, 0, true)
	return 0
}

// readDir answers READDIR and READDIRPLUS from the first entry whose cookie
// is above the offset: "." (cookie 1), ".." (cookie 2), then the names in
// the order they were added. The handle is not needed: the cookie says
// everything (so opendir-less mounts work too). A READDIRPLUS entry
// counts as a lookup, except "." and "..", which the kernel skips.
func (st *State) readDir(o *fuseops.ReadDirOp, plus bool, now time.Time) syscall.Errno {
	d, e := st.getDir(uint64(o.Inode))
	if e != 0 {
		return e
	}
	if d.attr.Nlink == 0 {
		return syscall.ENOENT // removed directory, as getdents on a dead dir
	}
	n, full := 0, false
	if o.Offset < cookieDot {
		w := st.putDirent(o.Dst, plus, cookieDot, ".", d, now)
		n, full = w, w == 0
	}
	if !full && o.Offset < cookieDotDot {
		w := st.putDirent(o.Dst[n:], plus, cookieDotDot, "..", st.inodes[d.dir.parent], now)
		n, full = n+w, w == 0
	}
	for i := d.dir.seek(uint64(o.Offset)); !full && i < len(d.dir.ents); i++ {
		ent := &d.dir.ents[i]
		if ent.ino == 0 {
			continue
		}
		w := st.putDirent(o.Dst[n:], plus, ent.cookie, ent.name, st.inodes[ent.ino], now)
		n, full = n+w, w == 0
	}
	o.BytesRead = n
	return 0
}

// putDirent writes one entry into buf, returning the bytes written (0 when
// it does not fit).
func (st *State) putDirent(buf []byte, plus bool, cookie uint64, name string, in *inode, now time.Time) int {
	de := fuseutil.Dirent{Offset: fuseops.DirOffset(cookie), Inode: fuseops.InodeID(in.ino),
		Name: name, Type: in.direntType()}
	if !plus {
		return fuseutil.WriteDirent(buf, de)
	}
	dp := fuseutil.DirentPlus{Dirent: de}
	dp.Entry.Child = fuseops.InodeID(in.ino)
	in.fillAttributes(&dp.Entry.Attributes)
	dp.Entry.AttributesExpiration = now.Add(st.cfg.AttrTimeout)
	dp.Entry.EntryExpiration = now.Add(st.cfg.EntryTimeout)
	w := fuseutil.WriteDirentPlus(buf, dp)
	if w > 0 && cookie >= firstCookie {
		in.nlookup++
	}
	return w
}
