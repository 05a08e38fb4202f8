package fsactor

import (
	"syscall"
	"time"

	"github.com/jacobsa/fuse"
	"github.com/jacobsa/fuse/fuseops"
)

func (st *State) getAttr(o *fuseops.GetInodeAttributesOp, now time.Time) syscall.Errno {
	in, e := st.getInode(uint64(o.Inode))
	if e != 0 {
		return e
	}
	in.fillAttributes(&o.Attributes)
	o.AttributesExpiration = now.Add(st.cfg.AttrTimeout)
	return 0
}

// setAttr answers SETATTR (chmod, chown, truncate, utimes) faithfully: the
// kernel itself sends the mode that clears setuid/setgid after a write, a
// chown or a truncate, so nothing is cleared here. Every setattr stamps
// ctime; a size change without an explicit mtime stamps mtime too. The
// size, the one change that can fail, goes first.
func (st *State) setAttr(o *fuseops.SetInodeAttributesOp, now time.Time) (uint64, syscall.Errno) {
	if e := st.writable(); e != 0 {
		return 0, e
	}
	in, e := st.getInode(uint64(o.Inode))
	if e != 0 {
		return 0, e
	}
	ns := now.UnixNano()
	if o.Size != nil {
		switch {
		case in.isDir():
			return 0, syscall.EISDIR
		case !in.isReg():
			return 0, syscall.EINVAL
		}
		if e := st.setSize(in, *o.Size); e != 0 {
			return 0, e
		}
		in.clampDirty(in.attr.Size)
		in.attr.Mtime = ns
		in.dirty = true
	}
	st.applyAttrs(in, o)
	in.attr.Ctime = ns
	var lsn uint64
	if inVolume(in) {
		lsn = st.emit(in, &Record{Op: RecSetattr, Ino: in.ino, Attr: in.attr})
	}
	in.fillAttributes(&o.Attributes)
	o.AttributesExpiration = now.Add(st.cfg.AttrTimeout)
	return st.mutationWait(lsn), 0
}

// applyAttrs copies mode bits, owner and explicit times from a SETATTR.
func (st *State) applyAttrs(in *inode, o *fuseops.SetInodeAttributesOp) {
	if o.Mode != nil {
		in.attr.Mode = in.attr.Mode&syscall.S_IFMT | fuse.ConvertGoMode(*o.Mode)&0o7777
	}
	if o.Uid != nil {
		in.attr.Uid = *o.Uid
	}
	if o.Gid != nil {
		in.attr.Gid = *o.Gid
	}
	if o.Atime != nil {
		in.attr.Atime = timeNs(*o.Atime)
	}
	if o.Mtime != nil {
		in.attr.Mtime = timeNs(*o.Mtime)
	}
}

// forget takes back n kernel references to ino (more than it holds: all).
func (st *State) forget(ino, n uint64) syscall.Errno {
	in, ok := st.inodes[ino]
	if !ok {
		return 0
	}
	in.nlookup -= min(n, in.nlookup)
	st.maybeFree(in)
	return 0
}

func (st *State) batchForget(o *fuseops.BatchForgetOp) syscall.Errno {
	for _, f := range o.Entries {
		st.forget(uint64(f.Inode), f.N)
	}
	return 0
}

// statFS reports the capacity in 4 KiB blocks, what memfds hold, and the
// inode limit.
func (st *State) statFS(o *fuseops.StatFSOp) syscall.Errno {
	const bs = 4096
	o.BlockSize, o.IoSize = bs, bs
	o.Blocks = uint64(st.capacity) / bs
	used := uint64(roundUp(st.used, bs)) / bs
	o.BlocksFree = o.Blocks - min(used, o.Blocks)
	o.BlocksAvailable = o.BlocksFree
	o.Inodes = st.maxInodes
	o.InodesFree = st.maxInodes - min(uint64(len(st.inodes)), st.maxInodes)
	return 0
}
