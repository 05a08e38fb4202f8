package replication

import "fmt"

// applier applies records to a view of a volume. Each op checks
// everything it needs before its first change; a batch is applied to a
// scratch view and thrown away whole on the first error, so a rejected
// record changes nothing (validate, then mutate).
//
// Besides what a record says about its own inode, the replica keeps the
// parent directories current: their mtime and ctime become the record's
// ctime, and directory link counts follow the POSIX convention (2 + number
// of subdirectories) when the directory's own count uses it (nlink >= 2).
type applier struct {
	v    *view
	lim  Limits
	meta *meta // NextIno advances with creates
}

func (a *applier) apply(r *Record) error {
	if err := checkRecordShape(r, a.lim); err != nil {
		return err
	}
	var err error
	switch r.Op {
	case OpCreate:
		err = a.create(r)
	case OpLink:
		err = a.link(r)
	case OpUnlink:
		err = a.unlink(r)
	case OpRmdir:
		err = a.rmdir(r)
	case OpRename:
		err = a.rename(r)
	case OpSetattr:
		err = a.setattr(r)
	case OpSetXattr:
		err = a.setXattr(r)
	case OpRemoveXattr:
		err = a.removeXattr(r)
	case OpData:
		err = a.data(r)
	}
	return err
}

// attr reads an inode's attributes; ok is false when it does not exist.
func (a *applier) attr(ino uint64) (Attr, bool) {
	v, ok := a.v.get(attrKey(ino))
	if !ok {
		return Attr{}, false
	}
	at, err := decodeAttr(v)
	return at, err == nil
}

func (a *applier) mustExist(r *Record, ino uint64) (Attr, error) {
	at, ok := a.attr(ino)
	if !ok {
		return Attr{}, preconditionf("lsn %d %s: inode %d does not exist", r.LSN, r.Op, ino)
	}
	return at, nil
}

func (a *applier) mustDir(r *Record, ino uint64) (Attr, error) {
	at, err := a.mustExist(r, ino)
	if err == nil && !isDir(at) {
		err = preconditionf("lsn %d %s: inode %d is not a directory", r.LSN, r.Op, ino)
	}
	return at, err
}

func (a *applier) lookup(parent uint64, name string) (uint64, bool) {
	v, ok := a.v.get(dentKey(parent, name))
	if !ok {
		return 0, false
	}
	ino, err := decodeU64(v)
	return ino, err == nil
}

// sameType checks that a record's attributes keep the inode's file type.
func sameType(r *Record, old, now Attr) error {
	if old.Mode&modeType != now.Mode&modeType {
		return preconditionf("lsn %d %s: inode %d changes type %#o → %#o", r.LSN, r.Op, r.Ino, old.Mode&modeType, now.Mode&modeType)
	}
	return nil
}

// touchDir updates a parent directory after a change in it: times from
// the record's ctime, link count by delta when it counts subdirectories.
func (a *applier) touchDir(dir uint64, ctime int64, nlinkDelta int) {
	at, ok := a.attr(dir)
	if !ok {
		return
	}
	if ctime != 0 {
		at.Mtime, at.Ctime = ctime, ctime
	}
	if at.Nlink >= 2 && nlinkDelta != 0 {
		at.Nlink = uint32(int64(at.Nlink) + int64(nlinkDelta))
		at.Nlink = max(at.Nlink, 2)
	}
	a.v.set(attrKey(dir), encodeAttr(at))
}

// putAttr stores an inode's attributes; a regular file whose size goes
// down loses what it stored past the new size (content is never longer
// than the size says).
func (a *applier) putAttr(ino uint64, at Attr) {
	if isReg(at) {
		if old, ok := a.attr(ino); ok && at.Size < old.Size {
			a.cutContent(ino, at.Size)
		}
	}
	a.v.set(attrKey(ino), encodeAttr(at))
}

// deleteInode removes an inode and everything stored under it.
func (a *applier) deleteInode(ino uint64) {
	if at, ok := a.attr(ino); ok && isReg(at) {
		a.deleteContent(ino)
	}
	a.v.del(attrKey(ino))
	a.v.del(targetKey(ino))
	a.v.del(upKey(ino))
	for _, k := range a.v.keysWithPrefix(childPrefix('x', ino)) {
		a.v.del(k)
	}
}

func (a *applier) create(r *Record) error {
	if r.Ino <= RootIno || r.Ino < a.meta.NextIno {
		return preconditionf("lsn %d create: inode %d is not new (next inode %d)", r.LSN, r.Ino, a.meta.NextIno)
	}
	if _, err := a.mustDir(r, r.Parent); err != nil {
		return err
	}
	if _, ok := a.lookup(r.Parent, r.Name); ok {
		return preconditionf("lsn %d create: %q exists in directory %d", r.LSN, r.Name, r.Parent)
	}
	a.putAttr(r.Ino, r.Attr)
	if r.Target != "" {
		a.v.set(targetKey(r.Ino), r.Target)
	}
	a.v.set(dentKey(r.Parent, r.Name), encodeU64(r.Ino))
	delta := 0
	if isDir(r.Attr) {
		a.v.set(upKey(r.Ino), encodeU64(r.Parent))
		delta = 1
	}
	a.touchDir(r.Parent, r.Attr.Ctime, delta)
	a.meta.NextIno = r.Ino + 1
	return nil
}

func (a *applier) link(r *Record) error {
	old, err := a.mustExist(r, r.Ino)
	if err != nil {
		return err
	}
	if isDir(old) {
		return preconditionf("lsn %d link: inode %d is a directory", r.LSN, r.Ino)
	}
	if err := sameType(r, old, r.Attr); err != nil {
		return err
	}
	if _, err := a.mustDir(r, r.Parent); err != nil {
		return err
	}
	if _, ok := a.lookup(r.Parent, r.Name); ok {
		return preconditionf("lsn %d link: %q exists in directory %d", r.LSN, r.Name, r.Parent)
	}
	a.v.set(dentKey(r.Parent, r.Name), encodeU64(r.Ino))
	a.putAttr(r.Ino, r.Attr)
	a.touchDir(r.Parent, r.Attr.Ctime, 0)
	return nil
}

// mustName checks that parent/name names ino.
func (a *applier) mustName(r *Record, parent uint64, name string, ino uint64) error {
	if _, err := a.mustDir(r, parent); err != nil {
		return err
	}
	got, ok := a.lookup(parent, name)
	if !ok {
		return preconditionf("lsn %d %s: no %q in directory %d", r.LSN, r.Op, name, parent)
	}
	if got != ino {
		return preconditionf("lsn %d %s: %q in directory %d is inode %d, not %d", r.LSN, r.Op, name, parent, got, ino)
	}
	return nil
}

func (a *applier) unlink(r *Record) error {
	if err := a.mustName(r, r.Parent, r.Name, r.Ino); err != nil {
		return err
	}
	old, _ := a.attr(r.Ino)
	if isDir(old) {
		return preconditionf("lsn %d unlink: inode %d is a directory", r.LSN, r.Ino)
	}
	if r.Attr.Nlink != 0 {
		if err := checkMode(r.Attr); err != nil {
			return invalidf("lsn %d unlink: %v", r.LSN, err)
		}
		if err := sameType(r, old, r.Attr); err != nil {
			return err
		}
	}
	a.v.del(dentKey(r.Parent, r.Name))
	if r.Attr.Nlink == 0 {
		a.deleteInode(r.Ino)
	} else {
		a.putAttr(r.Ino, r.Attr)
	}
	a.touchDir(r.Parent, r.Attr.Ctime, 0)
	return nil
}

func (a *applier) rmdir(r *Record) error {
	if r.Ino == RootIno {
		return preconditionf("lsn %d rmdir: the root", r.LSN)
	}
	if err := a.mustName(r, r.Parent, r.Name, r.Ino); err != nil {
		return err
	}
	if _, err := a.mustDir(r, r.Ino); err != nil {
		return err
	}
	if a.v.anyWithPrefix(childPrefix('d', r.Ino)) {
		return preconditionf("lsn %d rmdir: directory %d is not empty", r.LSN, r.Ino)
	}
	a.v.del(dentKey(r.Parent, r.Name))
	a.deleteInode(r.Ino)
	a.touchDir(r.Parent, r.Attr.Ctime, -1)
	return nil
}

func (a *applier) setattr(r *Record) error {
	old, err := a.mustExist(r, r.Ino)
	if err != nil {
		return err
	}
	if err := sameType(r, old, r.Attr); err != nil {
		return err
	}
	a.putAttr(r.Ino, r.Attr)
	return nil
}

func (a *applier) setXattr(r *Record) error {
	old, err := a.mustExist(r, r.Ino)
	if err != nil {
		return err
	}
	if err := a.optionalAttr(r, old); err != nil {
		return err
	}
	a.v.set(xattrKey(r.Ino, r.XattrName), string(r.Data))
	return nil
}

func (a *applier) removeXattr(r *Record) error {
	old, err := a.mustExist(r, r.Ino)
	if err != nil {
		return err
	}
	k := xattrKey(r.Ino, r.XattrName)
	if !a.v.has(k) {
		return preconditionf("lsn %d removexattr: inode %d has no xattr %q", r.LSN, r.Ino, r.XattrName)
	}
	if err := a.optionalAttr(r, old); err != nil {
		return err
	}
	a.v.del(k)
	return nil
}

// optionalAttr stores the attributes an xattr record may carry (its new
// ctime); a record without them (mode 0) leaves the inode as it is.
func (a *applier) optionalAttr(r *Record, old Attr) error {
	if r.Attr.Mode == 0 {
		return nil
	}
	if err := checkMode(r.Attr); err != nil {
		return invalidf("lsn %d %s: %v", r.LSN, r.Op, err)
	}
	if err := sameType(r, old, r.Attr); err != nil {
		return err
	}
	a.putAttr(r.Ino, r.Attr)
	return nil
}

func (a *applier) data(r *Record) error {
	old, err := a.mustExist(r, r.Ino)
	if err != nil {
		return err
	}
	if !isReg(old) {
		return preconditionf("lsn %d data: inode %d is not a regular file", r.LSN, r.Ino)
	}
	if err := sameType(r, old, r.Attr); err != nil {
		return err
	}
	if r.Partial {
		a.writeRanges(r.Ino, r.Ranges, r.Extents, r.Data) // ranges.go
	} else if err := a.writeContent(r.Ino, r.Extents, r.Data); err != nil {
		return fmt.Errorf("lsn %d data: %w", r.LSN, err)
	}
	a.putAttr(r.Ino, r.Attr)
	return nil
}
