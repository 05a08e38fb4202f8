package fsactor

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"syscall"
)

// Snapshot copies the whole volume (contents included) at the current LSN:
// every inode that has a name (unlinked files still open are not part of
// the volume any more), with directory entries in readdir order.
//
// A regular file's content is its data extents and their bytes (Extents,
// Data): holes are left out (they read as zeros), so a sparse file costs
// what was written, not its size.
func (st *State) Snapshot() (*Snapshot, error) { return st.snapshot(true, nil) }

// snapshot walks the volume's inodes in order for Snapshot and
// streamSnapshot: with their contents, or without them and with the
// length dataLen (if set) gives.
func (st *State) snapshot(withData bool, dataLen func(in *inode) (int64, error)) (*Snapshot, error) {
	s := &Snapshot{LSN: st.lsn, NextIno: st.nextIno, Inodes: make([]SnapInode, 0, len(st.inodes))}
	for _, ino := range slices.Sorted(maps.Keys(st.inodes)) {
		in := st.inodes[ino]
		if in.attr.Nlink == 0 && ino != rootIno {
			continue
		}
		si, err := st.snapInode(in, withData)
		if err == nil && dataLen != nil {
			si.DataLen, err = dataLen(in)
		}
		if err != nil {
			return nil, fmt.Errorf("fsactor: snapshot inode %d: %w", ino, err)
		}
		s.Inodes = append(s.Inodes, si)
	}
	return s, nil
}

// snapInode copies in; its content only if withData.
func (st *State) snapInode(in *inode, withData bool) (SnapInode, error) {
	si := SnapInode{Ino: in.ino, Attr: in.attr, Target: in.target}
	if len(in.xattrs) > 0 {
		si.Xattrs = make(map[string][]byte, len(in.xattrs))
		for _, x := range in.xattrs {
			si.Xattrs[x.name] = x.value // values are never modified in place
		}
	}
	if in.dir != nil {
		si.Entries = make([]SnapDirent, 0, in.dir.live())
		for _, e := range in.dir.ents {
			if e.ino != 0 {
				si.Entries = append(si.Entries, SnapDirent{Name: e.name, Ino: e.ino})
			}
		}
	}
	if withData {
		var err error
		if si.Extents, si.Data, err = st.readContent(in); err != nil {
			return si, err
		}
	}
	return si, nil
}

var errBadSnapshot = errors.New("inconsistent snapshot")

// restore rebuilds the state from snap: the same inode numbers, entry
// order, xattrs, times and contents; the next record is snap.LSN+1. Every
// inconsistency is an error wrapping errBadSnapshot, never a panic: the
// checks of restoreShape and checkExtents cover every invariant a
// snapshot's input can break, so the full invariants check (a second pass
// over every inode, 20% of a large restore) runs only in -tags invariants
// builds (restoreCheck), where it checks the restore itself.
func (st *State) restore(snap *Snapshot) error {
	ins, err := st.restoreShape(snap)
	if err != nil {
		return err
	}
	if err := st.restoreContents(snap, ins); err != nil {
		return err
	}
	st.setLSN(snap.LSN)
	st.inodes[rootIno].nlookup = 1
	if err := restoreCheck(st); err != nil {
		return fmt.Errorf("%w: %v", errBadSnapshot, err)
	}
	return nil
}

// restoreShape builds snap's inodes and names without their contents,
// checking everything restore checks but the contents' placement:
// restore's first half, and what Resync diffs the live state against. It
// returns the inodes in snap.Inodes's order.
func (st *State) restoreShape(snap *Snapshot) ([]*inode, error) {
	ins, err := st.restoreInodes(snap)
	if err != nil {
		return nil, err
	}
	for i := range snap.Inodes {
		if err := st.restoreEntries(&snap.Inodes[i], ins[i]); err != nil {
			return nil, err
		}
	}
	return ins, st.checkRestoredTree()
}

// restoreInodes creates every inode with its attributes and xattrs, and
// returns them in snap.Inodes's order (the later passes need no lookup).
func (st *State) restoreInodes(snap *Snapshot) ([]*inode, error) {
	st.nextIno = snap.NextIno
	if len(st.inodes) == 0 {
		// Sized once: growing a map of a million inodes rehashed it ~20
		// times. The snapshot is in memory already, so its length is no
		// untrusted claim.
		st.inodes = make(map[uint64]*inode, len(snap.Inodes))
	}
	ins := make([]*inode, len(snap.Inodes))
	for i := range snap.Inodes {
		si := &snap.Inodes[i]
		in, err := restoreInode(si, snap.NextIno)
		if err != nil {
			return nil, err
		}
		n := len(st.inodes)
		if st.inodes[si.Ino] = in; len(st.inodes) == n { // one hash, not a lookup and an insert
			return nil, fmt.Errorf("%w: inode %d listed twice", errBadSnapshot, si.Ino)
		}
		ins[i] = in
	}
	if root, ok := st.inodes[rootIno]; !ok || root.dir == nil {
		return nil, fmt.Errorf("%w: no root directory", errBadSnapshot)
	}
	st.inodes[rootIno].dir.parent = rootIno
	return ins, nil
}

// restoreInode builds one inode of a snapshot whose numbers are below
// nextIno.
func restoreInode(si *SnapInode, nextIno uint64) (*inode, error) {
	if si.Ino == 0 || si.Ino >= nextIno {
		return nil, fmt.Errorf("%w: inode %d outside [1, NextIno %d)", errBadSnapshot, si.Ino, nextIno)
	}
	in := &inode{ino: si.Ino, attr: si.Attr, content: noContent, target: si.Target}
	switch in.fileType() {
	case syscall.S_IFDIR:
		in.dir = newDir(0)
	case syscall.S_IFLNK:
		if in.attr.Size != uint64(len(si.Target)) {
			return nil, fmt.Errorf("%w: symlink %d size %d, target %d bytes", errBadSnapshot, si.Ino, in.attr.Size, len(si.Target))
		}
	case syscall.S_IFREG:
		if err := checkExtents(si.Extents, len(si.Data), in.attr.Size); err != nil {
			return nil, fmt.Errorf("%w: file %d: %v", errBadSnapshot, si.Ino, err)
		}
	}
	if len(si.Xattrs) > 0 {
		for _, name := range slices.Sorted(maps.Keys(si.Xattrs)) {
			if checkXattrName(name) != 0 {
				return nil, fmt.Errorf("%w: inode %d: bad xattr name %q", errBadSnapshot, si.Ino, name)
			}
			in.xattrs = append(in.xattrs, xattr{name: name, value: si.Xattrs[name]})
		}
	}
	return in, nil
}

// restoreEntries links the names of one directory d, in their order.
// Each name of a non-directory counts in its inode's nlookup, as scratch
// for checkRestoredTree (which puts it back to 0): a map of a million
// counts cost more than the names.
func (st *State) restoreEntries(si *SnapInode, d *inode) error {
	if len(si.Entries) == 0 {
		return nil
	}
	if d.dir == nil {
		return fmt.Errorf("%w: inode %d has entries but is no directory", errBadSnapshot, si.Ino)
	}
	if len(d.dir.ents) == 0 {
		d.dir.names = make(map[string]int, len(si.Entries))
		d.dir.ents = make([]dirent, 0, len(si.Entries))
	}
	for _, e := range si.Entries {
		child, ok := st.inodes[e.Ino]
		switch {
		case checkName(e.Name) != 0:
			return fmt.Errorf("%w: directory %d: bad name %q", errBadSnapshot, si.Ino, e.Name)
		case !ok:
			return fmt.Errorf("%w: %d/%q names missing inode %d", errBadSnapshot, si.Ino, e.Name, e.Ino)
		case child.dir != nil && (child.dir.parent != 0 || e.Ino == rootIno):
			return fmt.Errorf("%w: directory %d has two names", errBadSnapshot, e.Ino)
		}
		live := d.dir.live()
		d.dir.add(e.Name, e.Ino, child.dir != nil)
		if d.dir.live() == live { // add overwrote a name: the state is thrown away
			return fmt.Errorf("%w: %d/%q listed twice", errBadSnapshot, si.Ino, e.Name)
		}
		if child.dir != nil {
			child.dir.parent = d.ino
		} else {
			child.nlookup++
		}
	}
	return nil
}

// checkRestoredTree checks that every inode hangs from the root (no lost
// inode, no cycle) and that link counts match the names. A non-directory
// is reachable when it has a name (counted in nlookup by restoreEntries)
// and every directory is; a directory has one name at most
// (restoreEntries), so the directories form a tree under the root unless
// some lack a name or form a cycle: walked from the root through the
// directories alone, not through a million files' names.
func (st *State) checkRestoredTree() error {
	subdirs := map[uint64][]uint64{} // a directory's subdirectories
	dirs := 0
	for ino, in := range st.inodes {
		names := in.nlookup
		in.nlookup = 0
		if in.dir == nil {
			if names == 0 {
				return fmt.Errorf("%w: inode %d is not reachable from the root", errBadSnapshot, ino)
			}
			if uint64(in.attr.Nlink) != names {
				return fmt.Errorf("%w: inode %d has nlink %d, names say %d", errBadSnapshot, ino, in.attr.Nlink, names)
			}
			continue
		}
		dirs++
		if want := 2 + in.dir.subdirs; in.attr.Nlink != want {
			return fmt.Errorf("%w: inode %d has nlink %d, names say %d", errBadSnapshot, ino, in.attr.Nlink, want)
		}
		if ino != rootIno {
			if in.dir.parent == 0 {
				return fmt.Errorf("%w: inode %d is not reachable from the root", errBadSnapshot, ino)
			}
			subdirs[in.dir.parent] = append(subdirs[in.dir.parent], ino)
		}
	}
	reached, queue := 1, []uint64{rootIno}
	for len(queue) > 0 {
		kids := subdirs[queue[0]]
		queue = append(queue[1:], kids...)
		reached += len(kids)
	}
	if reached != dirs {
		return fmt.Errorf("%w: %d of %d directories are not reachable from the root (a cycle)", errBadSnapshot, dirs-reached, dirs)
	}
	return nil
}

// checkExtents checks that extents place n bytes within size: sorted,
// not overlapping, none empty (nil: n bytes from offset 0).
func checkExtents(exts []Extent, n int, size uint64) error {
	if exts == nil {
		if uint64(n) > size {
			return fmt.Errorf("%d bytes beyond size %d", n, size)
		}
		return nil
	}
	var end, sum uint64
	for _, e := range exts {
		if e.Len == 0 || e.Off < end || e.Off > size || e.Len > size-e.Off || e.Off+e.Len > MaxFileData {
			return fmt.Errorf("extent [%d, +%d) empty, out of order or beyond size %d", e.Off, e.Len, size)
		}
		end, sum = e.Off+e.Len, sum+e.Len
	}
	if sum != uint64(n) {
		return fmt.Errorf("extents hold %d bytes, data %d", sum, n)
	}
	return nil
}

// restoreContents puts the files' extents into their contents (holes
// stay holes): a slot file's through w (restore_write.go: few large
// writes), a memfd file's with putContent.
func (st *State) restoreContents(snap *Snapshot, ins []*inode) error {
	var w restoreWriter
	for i := range snap.Inodes {
		si, in := &snap.Inodes[i], ins[i]
		if !in.isReg() || len(si.Data) == 0 {
			continue
		}
		var err error
		if size := int64(in.attr.Size); in.inArena(size) {
			err = st.restoreSlot(in, si, &w)
		} else if e := st.putContent(in, si.Extents, si.Data); e != 0 {
			err = e
		}
		if err != nil {
			return fmt.Errorf("file %d: %w", si.Ino, err)
		}
	}
	if err := w.flush(); err != nil {
		return fmt.Errorf("restoring the files' contents: %w", errnoOf(err))
	}
	return nil
}

// restoreSlot gives a file of the arenas its slot and hands its extents
// to w: putContent's arena half, its write deferred.
func (st *State) restoreSlot(in *inode, si *SnapInode, w *restoreWriter) error {
	if e := st.slotFor(in, int64(in.attr.Size)); e != 0 {
		return e
	}
	data := si.Data
	if si.Extents == nil {
		return w.add(in.slot, 0, data)
	}
	for _, x := range si.Extents {
		if err := w.add(in.slot, int64(x.Off), data[:x.Len]); err != nil {
			return err
		}
		data = data[x.Len:]
	}
	return nil
}
