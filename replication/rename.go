package replication

// maxDepth bounds the walk up a directory tree (a broken tree must not
// loop forever).
const maxDepth = 1 << 16

func (a *applier) rename(r *Record) error {
	if err := a.mustName(r, r.Parent, r.Name, r.Ino); err != nil {
		return err
	}
	if _, err := a.mustDir(r, r.NewParent); err != nil {
		return err
	}
	old, _ := a.attr(r.Ino)
	if r.Attr.Mode != 0 {
		if err := checkMode(r.Attr); err != nil {
			return invalidf("lsn %d rename: %v", r.LSN, err)
		}
		if err := sameType(r, old, r.Attr); err != nil {
			return err
		}
	}
	target, exists := a.lookup(r.NewParent, r.NewName)
	if err := a.checkReplaced(r, target, exists); err != nil {
		return err
	}
	if exists && target == r.Ino {
		return nil // two names of one inode: rename(2) does nothing
	}
	if isDir(old) {
		if err := a.checkNotInside(r); err != nil {
			return err
		}
	}
	if exists {
		a.dropReplaced(r, target)
	}
	a.v.del(dentKey(r.Parent, r.Name))
	a.v.set(dentKey(r.NewParent, r.NewName), encodeU64(r.Ino))
	if r.Attr.Mode != 0 {
		a.putAttr(r.Ino, r.Attr)
	}
	a.moveDirLinks(r, isDir(old))
	return nil
}

// checkReplaced holds the record's Replaced against what NewName names,
// and the types against each other (rename(2)'s EISDIR, ENOTDIR,
// ENOTEMPTY).
func (a *applier) checkReplaced(r *Record, target uint64, exists bool) error {
	if !exists {
		if r.Replaced != 0 {
			return preconditionf("lsn %d rename: record replaces inode %d but %q does not exist in directory %d", r.LSN, r.Replaced, r.NewName, r.NewParent)
		}
		return nil
	}
	if r.Replaced != target {
		return preconditionf("lsn %d rename: %q in directory %d is inode %d, record says %d", r.LSN, r.NewName, r.NewParent, target, r.Replaced)
	}
	if target == r.Ino {
		return nil
	}
	old, _ := a.attr(r.Ino)
	tat, _ := a.attr(target)
	if isDir(old) != isDir(tat) {
		return preconditionf("lsn %d rename: inode %d and replaced inode %d differ in being directories", r.LSN, r.Ino, target)
	}
	if isDir(tat) && a.v.anyWithPrefix(childPrefix('d', target)) {
		return preconditionf("lsn %d rename: replaced directory %d is not empty", r.LSN, target)
	}
	return nil
}

// checkNotInside refuses to move directory r.Ino below itself.
func (a *applier) checkNotInside(r *Record) error {
	d := r.NewParent
	for i := 0; i < maxDepth && d != RootIno; i++ {
		if d == r.Ino {
			return preconditionf("lsn %d rename: directory %d would move inside itself", r.LSN, r.Ino)
		}
		v, ok := a.v.get(upKey(d))
		if !ok {
			return nil
		}
		up, err := decodeU64(v)
		if err != nil {
			return nil
		}
		d = up
	}
	if d == r.Ino {
		return preconditionf("lsn %d rename: directory %d would move inside itself", r.LSN, r.Ino)
	}
	return nil
}

// dropReplaced removes the inode NewName named: a directory goes, a file
// loses one link.
func (a *applier) dropReplaced(r *Record, target uint64) {
	tat, _ := a.attr(target)
	a.v.del(dentKey(r.NewParent, r.NewName))
	if isDir(tat) {
		a.deleteInode(target)
		a.touchDir(r.NewParent, 0, -1)
		return
	}
	if tat.Nlink <= 1 {
		a.deleteInode(target)
		return
	}
	tat.Nlink--
	if r.Attr.Ctime != 0 {
		tat.Ctime = r.Attr.Ctime
	}
	a.v.set(attrKey(target), encodeAttr(tat))
}

// moveDirLinks updates both parents: times, and subdirectory counts when
// a directory changes parent.
func (a *applier) moveDirLinks(r *Record, dir bool) {
	if dir {
		a.v.set(upKey(r.Ino), encodeU64(r.NewParent))
	}
	if r.Parent == r.NewParent {
		a.touchDir(r.Parent, r.Attr.Ctime, 0)
		return
	}
	delta := 0
	if dir {
		delta = 1
	}
	a.touchDir(r.Parent, r.Attr.Ctime, -delta)
	a.touchDir(r.NewParent, r.Attr.Ctime, delta)
}
