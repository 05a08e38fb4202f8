package fsactor

// applyRename applies a remote rename: Parent/Name (inode Ino) moves to
// NewParent/NewName, whose inode (Replaced, when not 0) loses that name.
// The checks are State.rename's, held against the record; the change is
// the same, with the times the record carries.
func (st *State) applyRename(r *Record) error {
	oldP, src, err := st.named(r.Parent, r.Name, r.Ino)
	if err != nil {
		return err
	}
	newP, err := st.liveDir(r.NewParent)
	if err != nil {
		return err
	}
	if err := sameType(src, r.Attr); err != nil {
		return err
	}
	dstIno := newP.dir.lookup(r.NewName)
	if dstIno != r.Replaced && !(dstIno == r.Ino && r.Replaced == 0) {
		return badf("%d/%q is inode %d, the record replaces %d", r.NewParent, r.NewName, dstIno, r.Replaced)
	}
	if dstIno == r.Ino {
		return nil // two names of one inode: rename(2) does nothing
	}
	var dst *inode
	if dstIno != 0 {
		dst = st.inodes[dstIno]
	}
	if err := st.checkRemoteRename(src, dst, oldP, newP); err != nil {
		return err
	}
	st.moveName(r, oldP, newP, src, dst)
	st.noteRename(r, oldP, newP, src, dst)
	if dst != nil {
		st.dropIfGone(dst)
	}
	return nil
}

// checkRemoteRename checks the kinds of source and target and where a
// directory moves, as checkRenameKinds does for a local rename.
func (st *State) checkRemoteRename(src, dst, oldP, newP *inode) error {
	switch {
	case dst != nil && src.isDir() != dst.isDir():
		return badf("rename of %d over %d: one is a directory", src.ino, dst.ino)
	case dst != nil && dst.isDir() && dst.dir.live() > 0:
		return badf("rename over non-empty directory %d", dst.ino)
	case src.isDir() && oldP != newP && st.isAncestor(src.ino, newP.ino):
		return badf("directory %d into its own subtree", src.ino)
	}
	return nil
}

// moveName changes the names and link counts of a checked rename.
func (st *State) moveName(r *Record, oldP, newP, src, dst *inode) {
	srcDir := src.isDir()
	if dst != nil {
		newP.dir.replace(r.NewName, src.ino, dst.isDir(), srcDir)
		if dst.isDir() {
			dst.attr.Nlink = 0
		} else {
			dst.attr.Nlink--
		}
		if r.Attr.Ctime != 0 {
			dst.attr.Ctime = r.Attr.Ctime
		}
		dst.lastLSN = r.LSN
	} else {
		newP.dir.add(r.NewName, src.ino, srcDir)
	}
	oldP.dir.remove(r.Name, srcDir)
	if srcDir {
		src.dir.parent = newP.ino
	}
	touchDir(oldP, r.Attr.Ctime)
	touchDir(newP, r.Attr.Ctime)
	takeAttr(src, r.Attr)
	src.lastLSN = r.LSN
}

// noteRename tells the kernel about a remote rename: the source name goes
// (notify_delete for a file; inval_entry for a directory, which
// notify_delete would mark dead), a replaced target is deleted, a free
// target name loses its negative dentry, both directories and the moved
// inode are invalidated.
func (st *State) noteRename(r *Record, oldP, newP, src, dst *inode) {
	if oldP.nlookup > 0 {
		if src.isDir() {
			st.note(Note{Kind: NoteInvalEntry, Parent: oldP.ino, Name: r.Name})
		} else {
			st.note(Note{Kind: NoteDelete, Parent: oldP.ino, Child: src.ino, Name: r.Name})
		}
		st.note(Note{Kind: NoteInvalInode, Child: oldP.ino, Len: -1})
	}
	switch {
	case dst != nil:
		st.noteGoneName(newP, dst, r.NewName)
	case newP != oldP || oldP.nlookup == 0:
		st.noteNewName(newP, r.NewName)
	default:
		st.note(Note{Kind: NoteInvalEntry, Parent: newP.ino, Name: r.NewName})
	}
	st.noteAttrs(src)
}
