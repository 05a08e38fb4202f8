package replication

import "sort"

// checkSnapshot validates a snapshot to install and returns it without the
// inodes no directory names (unlinked files or removed directories still
// open on the primary: nothing a replica keeps). File data may be shorter
// than the size: the rest is a hole.
func checkSnapshot(snap *Snapshot, lim Limits) (*Snapshot, error) {
	byIno := make(map[uint64]*SnapInode, len(snap.Inodes))
	for i := range snap.Inodes {
		in := &snap.Inodes[i]
		if err := checkSnapInode(in, snap.NextIno, lim); err != nil {
			return nil, err
		}
		if byIno[in.Ino] != nil {
			return nil, invalidf("snapshot: inode %d listed twice", in.Ino)
		}
		byIno[in.Ino] = in
	}
	root := byIno[RootIno]
	if root == nil || !isDir(root.Attr) {
		return nil, invalidf("snapshot: no root directory")
	}
	refs, err := checkEntries(snap, byIno)
	if err != nil {
		return nil, err
	}
	if err := checkTree(byIno, refs); err != nil {
		return nil, err
	}
	out := &Snapshot{LSN: snap.LSN, NextIno: snap.NextIno}
	if len(refs)+1 == len(snap.Inodes) { // all kept (refs: the named inodes, the root never): no copy
		out.Inodes = snap.Inodes
		return out, nil
	}
	out.Inodes = make([]SnapInode, 0, len(refs)+1)
	for _, in := range snap.Inodes {
		if in.Ino == RootIno || refs[in.Ino] > 0 {
			out.Inodes = append(out.Inodes, in)
		}
	}
	return out, nil
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
// references to each inode.
func checkEntries(snap *Snapshot, byIno map[uint64]*SnapInode) (map[uint64]int, error) {
	refs := make(map[uint64]int)
	for _, in := range snap.Inodes {
		seen := make(map[string]bool, len(in.Entries))
		for _, e := range in.Entries {
			if err := checkName("snapshot entry", e.Name); err != nil {
				return nil, invalidf("snapshot: directory %d: %v", in.Ino, err)
			}
			if seen[e.Name] {
				return nil, invalidf("snapshot: directory %d: %q listed twice", in.Ino, e.Name)
			}
			seen[e.Name] = true
			if byIno[e.Ino] == nil {
				return nil, invalidf("snapshot: directory %d: %q names missing inode %d", in.Ino, e.Name, e.Ino)
			}
			refs[e.Ino]++
		}
	}
	return refs, nil
}

// checkTree: every directory but the root is named exactly once, the root
// never, and all directories hang from the root (no cycles).
func checkTree(byIno map[uint64]*SnapInode, refs map[uint64]int) error {
	if refs[RootIno] != 0 {
		return invalidf("snapshot: the root is named by a directory")
	}
	dirs := 0
	for ino, in := range byIno {
		if !isDir(in.Attr) || (ino != RootIno && refs[ino] == 0 && in.Attr.Nlink == 0 && len(in.Entries) == 0) {
			continue // a file, or a removed directory still open on the primary
		}
		dirs++
		if ino != RootIno && refs[ino] != 1 {
			return invalidf("snapshot: directory %d named %d times", ino, refs[ino])
		}
	}
	reached := 0
	queue := []uint64{RootIno}
	for len(queue) > 0 {
		in := byIno[queue[0]]
		queue = queue[1:]
		reached++
		for _, e := range in.Entries {
			if isDir(byIno[e.Ino].Attr) {
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
