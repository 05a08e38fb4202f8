package replication

import "sort"

// checkSnapshot validates a snapshot to install and returns it without the
// inodes no directory names (unlinked files or removed directories still
// open on the primary: nothing a replica keeps). File data may be shorter
// than the size: the rest is a hole.
func checkSnapshot(snap *Snapshot, lim Limits) (*Snapshot, error) {
	idx := newInoIndex(snap)
	for i := range snap.Inodes {
		in := &snap.Inodes[i]
		if err := checkSnapInode(in, snap.NextIno, lim); err != nil {
			return nil, err
		}
		if !idx.add(in.Ino, i) {
			return nil, invalidf("snapshot: inode %d listed twice", in.Ino)
		}
	}
	root := idx.get(snap, RootIno)
	if root == nil || !isDir(root.Attr) {
		return nil, invalidf("snapshot: no root directory")
	}
	refs, named, err := checkEntries(snap, idx)
	if err != nil {
		return nil, err
	}
	if err := checkTree(snap, idx, refs); err != nil {
		return nil, err
	}
	out := &Snapshot{LSN: snap.LSN, NextIno: snap.NextIno}
	if named+1 == len(snap.Inodes) { // all kept (the named inodes, the root never): no copy
		out.Inodes = snap.Inodes
		return out, nil
	}
	out.Inodes = make([]SnapInode, 0, named+1)
	for i, in := range snap.Inodes {
		if in.Ino == RootIno || refs[i] > 0 {
			out.Inodes = append(out.Inodes, in)
		}
	}
	return out, nil
}

// inoIndex finds a snapshot's inodes by number: a slice indexed by inode
// number when the numbers are dense enough (a volume's are: the actor
// hands them out in order), else a map. The map of 1,000,000 inodes, and
// a second one counting references, were 1.3 s of CPU in a fetch of a
// 1,000,000-file volume (issue 13).
type inoIndex struct {
	dense  []int32 // position + 1 by inode number, 0: none
	sparse map[uint64]int
}

func newInoIndex(snap *Snapshot) *inoIndex {
	n := uint64(len(snap.Inodes))
	if snap.NextIno <= 4*n+1024 && n < 1<<31-1 {
		return &inoIndex{dense: make([]int32, snap.NextIno)}
	}
	return &inoIndex{sparse: make(map[uint64]int, n)}
}

// add records that inode ino is at position i; false if it is there
// already. ino is below the snapshot's NextIno (checkSnapInode).
func (x *inoIndex) add(ino uint64, i int) bool {
	if x.dense != nil {
		if x.dense[ino] != 0 {
			return false
		}
		x.dense[ino] = int32(i + 1)
		return true
	}
	if _, ok := x.sparse[ino]; ok {
		return false
	}
	x.sparse[ino] = i
	return true
}

// pos returns inode ino's position, -1 if the snapshot has none.
func (x *inoIndex) pos(ino uint64) int {
	if x.dense != nil {
		if ino >= uint64(len(x.dense)) {
			return -1
		}
		return int(x.dense[ino]) - 1
	}
	if i, ok := x.sparse[ino]; ok {
		return i
	}
	return -1
}

func (x *inoIndex) get(snap *Snapshot, ino uint64) *SnapInode {
	if i := x.pos(ino); i >= 0 {
		return &snap.Inodes[i]
	}
	return nil
}

func checkSnapInode(in *SnapInode, nextIno uint64, lim Limits) error {
	if in.Ino == 0 || in.Ino >= nextIno {
		return invalidf("snapshot: inode %d outside [1, next inode %d)", in.Ino, nextIno)
	}
	if err := checkMode(in.Attr); err != nil {
		return invalidf("snapshot: inode %d: %v", in.Ino, err)
	}
	if isLnk(in.Attr) {
		if err := checkTarget(in.Target, lim); err != nil {
			return invalidf("snapshot: inode %d: %v", in.Ino, err)
		}
	} else if in.Target != "" {
		return invalidf("snapshot: inode %d: target on a non-symlink", in.Ino)
	}
	if in.Attr.Size > maxSize {
		return invalidf("snapshot: inode %d: size %d exceeds the limit", in.Ino, in.Attr.Size)
	}
	if isReg(in.Attr) {
		if err := checkContent(in.Extents, len(in.Data), in.Attr.Size, lim); err != nil {
			return invalidf("snapshot: inode %d: %v", in.Ino, err)
		}
	} else if len(in.Data) > 0 || in.Extents != nil {
		return invalidf("snapshot: inode %d: data on a non-regular file", in.Ino)
	}
	if !isDir(in.Attr) && len(in.Entries) > 0 {
		return invalidf("snapshot: inode %d: entries on a non-directory", in.Ino)
	}
	for name, val := range in.Xattrs {
		if err := checkXattrName(name); err != nil {
			return invalidf("snapshot: inode %d: %v", in.Ino, err)
		}
		if len(val) > lim.MaxXattrValue {
			return invalidf("snapshot: inode %d: xattr %q of %d bytes", in.Ino, name, len(val))
		}
	}
	return nil
}

// checkEntries checks names and targets of every entry and counts the
// references to each inode, by position in snap.Inodes; named is the
// number of inodes named at least once.
func checkEntries(snap *Snapshot, idx *inoIndex) (refs []int32, named int, err error) {
	refs = make([]int32, len(snap.Inodes))
	for _, in := range snap.Inodes {
		if len(in.Entries) == 0 {
			continue
		}
		seen := make(map[string]bool, len(in.Entries))
		for _, e := range in.Entries {
			if err := checkName("snapshot entry", e.Name); err != nil {
				return nil, 0, invalidf("snapshot: directory %d: %v", in.Ino, err)
			}
			if seen[e.Name] {
				return nil, 0, invalidf("snapshot: directory %d: %q listed twice", in.Ino, e.Name)
			}
			seen[e.Name] = true
			i := idx.pos(e.Ino)
			if i < 0 {
				return nil, 0, invalidf("snapshot: directory %d: %q names missing inode %d", in.Ino, e.Name, e.Ino)
			}
			if refs[i] == 0 {
				named++
			}
			if refs[i] < 1<<31-1 {
				refs[i]++
			}
		}
	}
	return refs, named, nil
}

// checkTree: every directory but the root is named exactly once, the root
// never, and all directories hang from the root (no cycles). refs counts
// the names of each inode by position.
func checkTree(snap *Snapshot, idx *inoIndex, refs []int32) error {
	if refs[idx.pos(RootIno)] != 0 {
		return invalidf("snapshot: the root is named by a directory")
	}
	dirs := 0
	for i := range snap.Inodes {
		in := &snap.Inodes[i]
		ino := in.Ino
		if !isDir(in.Attr) || (ino != RootIno && refs[i] == 0 && in.Attr.Nlink == 0 && len(in.Entries) == 0) {
			continue // a file, or a removed directory still open on the primary
		}
		dirs++
		if ino != RootIno && refs[i] != 1 {
			return invalidf("snapshot: directory %d named %d times", ino, refs[i])
		}
	}
	reached := 0
	queue := []uint64{RootIno}
	for len(queue) > 0 {
		in := idx.get(snap, queue[0])
		queue = queue[1:]
		reached++
		for _, e := range in.Entries {
			if isDir(idx.get(snap, e.Ino).Attr) {
				queue = append(queue, e.Ino)
			}
		}
		if reached > dirs {
			break
		}
	}
	if reached != dirs {
		return invalidf("snapshot: %d directories but %d reachable from the root", dirs, reached)
	}
	return nil
}

// sortedXattrNames lists a map's names in order (deterministic encoding).
func sortedXattrNames(m map[string][]byte) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
