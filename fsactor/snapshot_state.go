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
// inconsistency is an error wrapping errBadSnapshot, never a panic.
func (st *State) restore(snap *Snapshot) error {
	if err := st.restoreShape(snap); err != nil {
		return err
	}
	for _, si := range snap.Inodes {
		if err := st.restoreContent(si); err != nil {
			return err
		}
	}
	st.setLSN(snap.LSN)
	st.inodes[rootIno].nlookup = 1
	if err := st.invariantsErr(); err != nil {
		return fmt.Errorf("%w: %v", errBadSnapshot, err)
	}
	return nil
}

// restoreShape builds snap's inodes and names without their contents,
// checking everything restore checks but the final invariants: restore's
// first half, and what Resync diffs the live state against.
func (st *State) restoreShape(snap *Snapshot) error {
	if err := st.restoreInodes(snap); err != nil {
		return err
	}
	for _, si := range snap.Inodes {
		if err := st.restoreEntries(si); err != nil {
			return err
		}
	}
	return st.checkRestoredTree()
}

// restoreInodes creates every inode with its attributes and xattrs.
func (st *State) restoreInodes(snap *Snapshot) error {
	st.nextIno = snap.NextIno
	for _, si := range snap.Inodes {
		if si.Ino == 0 || si.Ino >= snap.NextIno {
			return fmt.Errorf("%w: inode %d outside [1, NextIno %d)", errBadSnapshot, si.Ino, snap.NextIno)
		}
		if _, dup := st.inodes[si.Ino]; dup {
			return fmt.Errorf("%w: inode %d listed twice", errBadSnapshot, si.Ino)
		}
		in := &inode{ino: si.Ino, attr: si.Attr, content: noContent, target: si.Target}
		switch in.fileType() {
		case syscall.S_IFDIR:
			in.dir = newDir(0)
		case syscall.S_IFLNK:
			if in.attr.Size != uint64(len(si.Target)) {
				return fmt.Errorf("%w: symlink %d size %d, target %d bytes", errBadSnapshot, si.Ino, in.attr.Size, len(si.Target))
			}
		case syscall.S_IFREG:
			if err := checkExtents(si.Extents, len(si.Data), in.attr.Size); err != nil {
				return fmt.Errorf("%w: file %d: %v", errBadSnapshot, si.Ino, err)
			}
		}
		for _, name := range slices.Sorted(maps.Keys(si.Xattrs)) {
			if checkXattrName(name) != 0 {
				return fmt.Errorf("%w: inode %d: bad xattr name %q", errBadSnapshot, si.Ino, name)
			}
			in.xattrs = append(in.xattrs, xattr{name: name, value: si.Xattrs[name]})
		}
		st.inodes[si.Ino] = in
	}
	if root, ok := st.inodes[rootIno]; !ok || root.dir == nil {
		return fmt.Errorf("%w: no root directory", errBadSnapshot)
	}
	st.inodes[rootIno].dir.parent = rootIno
	return nil
}

// restoreEntries links the names of one directory, in their order.
func (st *State) restoreEntries(si SnapInode) error {
	if len(si.Entries) == 0 {
		return nil
	}
	d := st.inodes[si.Ino]
	if d.dir == nil {
		return fmt.Errorf("%w: inode %d has entries but is no directory", errBadSnapshot, si.Ino)
	}
	for _, e := range si.Entries {
		child, ok := st.inodes[e.Ino]
		switch {
		case checkName(e.Name) != 0:
			return fmt.Errorf("%w: directory %d: bad name %q", errBadSnapshot, si.Ino, e.Name)
		case !ok:
			return fmt.Errorf("%w: %d/%q names missing inode %d", errBadSnapshot, si.Ino, e.Name, e.Ino)
		case d.dir.lookup(e.Name) != 0:
			return fmt.Errorf("%w: %d/%q listed twice", errBadSnapshot, si.Ino, e.Name)
		case child.dir != nil && (child.dir.parent != 0 || e.Ino == rootIno):
			return fmt.Errorf("%w: directory %d has two names", errBadSnapshot, e.Ino)
		}
		if child.dir != nil {
			child.dir.parent = d.ino
		}
		d.dir.add(e.Name, e.Ino, child.dir != nil)
	}
	return nil
}

// checkRestoredTree checks that every inode hangs from the root (no lost
// inode, no cycle) and that link counts match the names.
func (st *State) checkRestoredTree() error {
	seen := map[uint64]bool{rootIno: true}
	links := map[uint64]uint32{}
	queue := []uint64{rootIno}
	for len(queue) > 0 {
		d := st.inodes[queue[0]]
		queue = queue[1:]
		for _, e := range d.dir.ents {
			links[e.ino]++
			if !seen[e.ino] {
				seen[e.ino] = true
				if st.inodes[e.ino].dir != nil {
					queue = append(queue, e.ino)
				}
			}
		}
	}
	for ino, in := range st.inodes {
		want := links[ino]
		if in.dir != nil {
			want = 2 + in.dir.subdirs
		}
		switch {
		case !seen[ino]:
			return fmt.Errorf("%w: inode %d is not reachable from the root", errBadSnapshot, ino)
		case in.attr.Nlink != want:
			return fmt.Errorf("%w: inode %d has nlink %d, names say %d", errBadSnapshot, ino, in.attr.Nlink, want)
		}
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

// restoreContent puts a file's extents into its content: holes stay
// holes.
func (st *State) restoreContent(si SnapInode) error {
	in := st.inodes[si.Ino]
	if !in.isReg() || len(si.Data) == 0 {
		return nil
	}
	if e := st.putContent(in, si.Extents, si.Data); e != 0 {
		return fmt.Errorf("file %d: %w", si.Ino, e)
	}
	return nil
}
