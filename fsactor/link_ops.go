package fsactor

import (
	"syscall"
	"time"

	"github.com/jacobsa/fuse/fuseops"
)

// createLink answers LINK. It waits for its record: link() publishes a name.
func (st *State) createLink(o *fuseops.CreateLinkOp, now time.Time) (uint64, syscall.Errno) {
	if e := st.writable(); e != 0 {
		return 0, e
	}
	if e := checkName(o.Name); e != 0 {
		return 0, e
	}
	p, e := st.getDir(uint64(o.Parent))
	if e != 0 {
		return 0, e
	}
	t, e := st.getInode(uint64(o.Target))
	switch {
	case e != 0:
		return 0, e
	case t.isDir():
		return 0, syscall.EPERM
	case p.attr.Nlink == 0 || t.attr.Nlink == 0:
		return 0, syscall.ENOENT
	case p.dir.lookup(o.Name) != 0:
		return 0, syscall.EEXIST
	case t.attr.Nlink >= maxNlink:
		return 0, syscall.EMLINK
	}
	ns := now.UnixNano()
	p.dir.add(o.Name, t.ino, false)
	p.touchM(ns)
	t.attr.Nlink++
	t.attr.Ctime = ns
	lsn := st.emit(t, &Record{Op: RecLink, Ino: t.ino, Parent: p.ino, Name: o.Name, Attr: t.attr})
	st.fillEntry(&o.Entry, t, now)
	return lsn, 0
}

// checkRemove validates removing parent/name: the inode it names.
func (st *State) checkRemove(parent uint64, name string) (*inode, *inode, syscall.Errno) {
	if len(name) > 255 {
		return nil, nil, syscall.ENAMETOOLONG
	}
	p, e := st.getDir(parent)
	if e != 0 {
		return nil, nil, e
	}
	ino := p.dir.lookup(name)
	if ino == 0 {
		return nil, nil, syscall.ENOENT
	}
	return p, st.inodes[ino], 0
}

func (st *State) unlink(o *fuseops.UnlinkOp, now time.Time) (uint64, syscall.Errno) {
	if e := st.writable(); e != 0 {
		return 0, e
	}
	p, child, e := st.checkRemove(uint64(o.Parent), o.Name)
	if e != 0 {
		return 0, e
	}
	if child.isDir() {
		return 0, syscall.EISDIR
	}
	return st.mutationWait(st.removeEntry(p, o.Name, child, now.UnixNano())), 0
}

func (st *State) rmDir(o *fuseops.RmDirOp, now time.Time) (uint64, syscall.Errno) {
	if e := st.writable(); e != 0 {
		return 0, e
	}
	switch o.Name {
	case ".":
		return 0, syscall.EINVAL
	case "..":
		return 0, syscall.ENOTEMPTY
	}
	p, child, e := st.checkRemove(uint64(o.Parent), o.Name)
	switch {
	case e != 0:
		return 0, e
	case !child.isDir():
		return 0, syscall.ENOTDIR
	case child.dir.live() > 0:
		return 0, syscall.ENOTEMPTY
	}
	return st.mutationWait(st.removeEntry(p, o.Name, child, now.UnixNano())), 0
}

// removeEntry unlinks p/name (naming child; an empty directory for rmdir)
// and emits the record.
func (st *State) removeEntry(p *inode, name string, child *inode, ns int64) uint64 {
	isDir := child.isDir()
	p.dir.remove(name, isDir)
	syncDirNlink(p)
	p.touchM(ns)
	child.attr.Ctime = ns
	op := RecUnlink
	if isDir {
		child.attr.Nlink = 0
		op = RecRmdir
	} else {
		child.attr.Nlink--
	}
	lsn := st.emit(child, &Record{Op: op, Ino: child.ino, Parent: p.ino, Name: name, Attr: child.attr})
	st.maybeFree(child)
	return lsn
}

// removeName is RemoveName: unlink or rmdir by the filesystem itself, told
// to the kernel through notes.
func (st *State) removeName(parent uint64, name string, now time.Time) syscall.Errno {
	if e := checkName(name); e != 0 {
		return e
	}
	p, child, e := st.checkRemove(parent, name)
	if e != 0 {
		return e
	}
	if child.isDir() && child.dir.live() > 0 {
		return syscall.ENOTEMPTY
	}
	ino := child.ino
	st.removeEntry(p, name, child, now.UnixNano())
	st.note(Note{Kind: NoteDelete, Parent: parent, Child: ino, Name: name})
	st.note(Note{Kind: NoteInvalInode, Child: parent, Len: -1})
	if in, ok := st.inodes[ino]; ok && in.attr.Nlink > 0 {
		// Other names remain: the kernel's notify_delete zeroed its nlink.
		st.note(Note{Kind: NoteInvalInode, Child: ino, Len: -1})
	}
	return 0
}

// renameArgs are the inodes a rename touches, found by checkRename.
type renameArgs struct {
	oldP, newP, src, dst *inode // dst nil: NewName is free
}

// checkRename returns every error a rename can give before anything
// changes (gVisor's RenameAt). same reports a rename onto the name of the
// same inode: a successful no-op.
func (st *State) checkRename(o *fuseops.RenameOp) (a renameArgs, same bool, e syscall.Errno) {
	if e = st.writable(); e != 0 {
		return a, false, e
	}
	for _, n := range [2]string{o.OldName, o.NewName} {
		if e = checkName(n); e != 0 {
			return a, false, e
		}
	}
	if a.oldP, e = st.getDir(uint64(o.OldParent)); e != 0 {
		return a, false, e
	}
	if a.newP, e = st.getDir(uint64(o.NewParent)); e != 0 {
		return a, false, e
	}
	srcIno := a.oldP.dir.lookup(o.OldName)
	if srcIno == 0 || a.newP.attr.Nlink == 0 {
		return a, false, syscall.ENOENT
	}
	a.src = st.inodes[srcIno]
	dstIno := a.newP.dir.lookup(o.NewName)
	if dstIno == srcIno {
		return a, true, 0
	}
	if dstIno != 0 {
		a.dst = st.inodes[dstIno]
	}
	return a, false, st.checkRenameKinds(a)
}

// checkRenameKinds checks the types of source and target and, for a
// directory, where it moves.
func (st *State) checkRenameKinds(a renameArgs) syscall.Errno {
	if a.dst != nil {
		switch {
		case a.src.isDir() && !a.dst.isDir():
			return syscall.ENOTDIR
		case !a.src.isDir() && a.dst.isDir():
			return syscall.EISDIR
		case a.dst.isDir() && a.dst.dir.live() > 0:
			return syscall.ENOTEMPTY
		}
	}
	if !a.src.isDir() || a.oldP == a.newP {
		return 0
	}
	if st.isAncestor(a.src.ino, a.newP.ino) {
		return syscall.EINVAL // a directory into its own subtree
	}
	if a.dst == nil && a.newP.attr.Nlink >= maxNlink {
		return syscall.EMLINK
	}
	return 0
}

// isAncestor reports whether directory a is d or one of d's ancestors.
func (st *State) isAncestor(a, d uint64) bool {
	for {
		if d == a {
			return true
		}
		if d == rootIno {
			return false
		}
		d = st.inodes[d].dir.parent
	}
}

// rename answers RENAME. It waits for its record: spools publish messages
// by renaming them.
func (st *State) rename(o *fuseops.RenameOp, now time.Time) (uint64, syscall.Errno) {
	a, same, e := st.checkRename(o)
	if e != 0 {
		return 0, e
	}
	if same {
		return st.lsn, 0
	}
	ns := now.UnixNano()
	srcDir := a.src.isDir()
	var replaced uint64
	if a.dst != nil {
		replaced = a.dst.ino
		a.newP.dir.replace(o.NewName, a.src.ino, a.dst.isDir(), srcDir)
		a.dst.attr.Ctime = ns
		if a.dst.isDir() {
			a.dst.attr.Nlink = 0
		} else {
			a.dst.attr.Nlink--
		}
	} else {
		a.newP.dir.add(o.NewName, a.src.ino, srcDir)
	}
	a.oldP.dir.remove(o.OldName, srcDir)
	if srcDir {
		a.src.dir.parent = a.newP.ino
	}
	syncDirNlink(a.oldP)
	syncDirNlink(a.newP)
	a.oldP.touchM(ns)
	a.newP.touchM(ns)
	a.src.attr.Ctime = ns
	lsn := st.emit(a.src, &Record{Op: RecRename, Ino: a.src.ino, Parent: a.oldP.ino, Name: o.OldName,
		NewParent: a.newP.ino, NewName: o.NewName, Replaced: replaced, Attr: a.src.attr})
	if a.dst != nil {
		a.dst.lastLSN = lsn // it lost a link
		st.maybeFree(a.dst)
	}
	return lsn, 0
}
