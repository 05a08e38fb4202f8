package fsactor

import (
	"bytes"
	"errors"
	"fmt"
)

// invariantsErr checks every INVARIANT comment of State, inode and dir and
// returns the first one broken. It walks the whole volume and fstats every
// memfd: for tests and recovery, never the hot path.
func (st *State) invariantsErr() error {
	root, ok := st.inodes[rootIno]
	if !ok || root.dir == nil || root.dir.parent != rootIno {
		return fmt.Errorf("root missing, not a directory, or not its own parent")
	}
	links, err := st.countLinks()
	if err != nil {
		return err
	}
	var used int64
	for ino, in := range st.inodes {
		if err := st.checkInode(ino, in, links[ino]); err != nil {
			return fmt.Errorf("inode %d: %w", ino, err)
		}
		used += in.allocated
	}
	if used != st.used {
		return fmt.Errorf("used %d, memfds hold %d", st.used, used)
	}
	if err := st.checkSpare(); err != nil {
		return err
	}
	if err := st.checkArenas(); err != nil {
		return err
	}
	if err := st.checkEffects(); err != nil {
		return err
	}
	if err := st.checkFollower(); err != nil {
		return err
	}
	return st.checkHandles()
}

// checkEffects checks the records not yet applied end at the head, in
// consecutive LSNs.
func (st *State) checkEffects() error {
	recs := st.eff.Records
	for i, r := range recs {
		if want := st.lsn - uint64(len(recs)-1-i); r.LSN != want {
			return fmt.Errorf("effects: record %d of %d has lsn %d, want %d (head %d)", i, len(recs), r.LSN, want, st.lsn)
		}
	}
	return nil
}

// countLinks checks every directory's entries and counts the names of each
// inode.
func (st *State) countLinks() (map[uint64]uint32, error) {
	links := make(map[uint64]uint32, len(st.inodes))
	for ino, in := range st.inodes {
		if in.dir == nil {
			continue
		}
		if err := st.checkDir(ino, in.dir); err != nil {
			return nil, fmt.Errorf("directory %d: %w", ino, err)
		}
		for _, e := range in.dir.ents {
			if e.ino != 0 {
				links[e.ino]++
			}
		}
	}
	return links, nil
}

// checkDir checks a directory's name map, cookie order and children.
func (st *State) checkDir(ino uint64, d *dir) error {
	var live, tombs int
	var subdirs uint32
	last := uint64(cookieDotDot)
	for i, e := range d.ents {
		if e.cookie <= last || e.cookie >= d.nextCookie {
			return fmt.Errorf("cookie %d after %d (next %d)", e.cookie, last, d.nextCookie)
		}
		last = e.cookie
		if e.ino == 0 {
			tombs++
			continue
		}
		live++
		if j, ok := d.names[e.name]; !ok || j != i {
			return fmt.Errorf("name %q at %d, map says %d", e.name, i, j)
		}
		child, ok := st.inodes[e.ino]
		if !ok {
			return fmt.Errorf("%q names freed inode %d", e.name, e.ino)
		}
		if child.dir != nil {
			subdirs++
			if child.dir.parent != ino {
				return fmt.Errorf("subdirectory %q has parent %d", e.name, child.dir.parent)
			}
		}
	}
	if live != len(d.names) || tombs != d.tombs || subdirs != d.subdirs {
		return fmt.Errorf("live %d/%d, tombstones %d/%d, subdirs %d/%d",
			live, len(d.names), tombs, d.tombs, subdirs, d.subdirs)
	}
	return nil
}

// checkInode checks one inode against the names that link it.
func (st *State) checkInode(ino uint64, in *inode, links uint32) error {
	if in.ino != ino || ino >= st.nextIno || ino == 0 {
		return fmt.Errorf("number %d (next %d)", in.ino, st.nextIno)
	}
	if ino != rootIno && in.attr.Nlink == 0 && in.nlookup == 0 && in.openHandles == 0 {
		return fmt.Errorf("unreferenced but not freed")
	}
	if err := checkNlink(ino, in, links); err != nil {
		return err
	}
	if (in.dir != nil) != in.isDir() {
		return fmt.Errorf("mode %#o but dir part %v", in.attr.Mode, in.dir != nil)
	}
	if !in.isSymlink() && in.target != "" || in.isSymlink() && in.attr.Size != uint64(len(in.target)) {
		return fmt.Errorf("symlink target %q, size %d", in.target, in.attr.Size)
	}
	if !in.isReg() && (in.hasContent() || in.dirty) {
		return fmt.Errorf("a %#o has content or is dirty", in.fileType())
	}
	if err := in.dirtyRangesErr(); err != nil {
		return err
	}
	if in.lastLSN > st.lsn {
		return fmt.Errorf("last record %d after the head %d", in.lastLSN, st.lsn)
	}
	for i := 1; i < len(in.xattrs); i++ {
		if in.xattrs[i-1].name >= in.xattrs[i].name {
			return fmt.Errorf("xattrs out of order at %q", in.xattrs[i].name)
		}
	}
	return st.checkContent(in)
}

// checkNlink checks the link count against the names.
func checkNlink(ino uint64, in *inode, links uint32) error {
	if in.dir == nil {
		if in.attr.Nlink != links {
			return fmt.Errorf("nlink %d, named %d times", in.attr.Nlink, links)
		}
		return nil
	}
	named := links == 1 || ino == rootIno && links == 0
	switch {
	case in.attr.Nlink == 0 && links == 0 && in.dir.live() == 0:
		return nil // removed, kept alive by the kernel
	case !named || in.attr.Nlink != 2+in.dir.subdirs:
		return fmt.Errorf("directory nlink %d with %d subdirectories, named %d times",
			in.attr.Nlink, in.dir.subdirs, links)
	}
	return nil
}

// checkContent checks a file's storage against the size and allocation
// recorded.
func (st *State) checkContent(in *inode) error {
	if in.frozen {
		if !in.hasContent() || st.snap == nil {
			return fmt.Errorf("frozen without content (%v) or a streamed snapshot (%v)", in.hasContent(), st.snap != nil)
		}
		if _, ok := st.snap.sizes[in.ino]; !ok {
			return errors.New("frozen but not in the streamed snapshot")
		}
	}
	if in.view != nil && in.fd < 0 {
		return errors.New("a content view without a memfd")
	}
	switch {
	case in.slot.a != nil:
		return checkSlot(in)
	case in.fd < 0:
		if in.allocated != 0 {
			return fmt.Errorf("no content but %d bytes allocated", in.allocated)
		}
		return nil
	}
	size, alloc, err := memfdStat(in.fd)
	if err != nil {
		return err
	}
	if uint64(size) != in.attr.Size || alloc != in.allocated {
		return fmt.Errorf("memfd size %d alloc %d, attr size %d alloc %d", size, alloc, in.attr.Size, in.allocated)
	}
	return nil
}

// checkSlot checks a slot file: no memfd, the size within the slot, the
// slot's size as its allocation, zeros past the size.
func checkSlot(in *inode) error {
	s := in.slot
	switch {
	case in.fd >= 0:
		return fmt.Errorf("memfd %d and an arena slot", in.fd)
	case in.attr.Size > uint64(s.size()) || s.size() > arenaMax:
		return fmt.Errorf("size %d in a slot of %d", in.attr.Size, s.size())
	case in.allocated != s.size():
		return fmt.Errorf("slot of %d, %d allocated", s.size(), in.allocated)
	case s.idx < 0 || s.idx >= s.a.next:
		return fmt.Errorf("slot %d of an arena that handed out %d", s.idx, s.a.next)
	}
	return checkZero(s, int64(in.attr.Size), s.size())
}

// checkZero checks that [from, to) of a slot reads zeros.
func checkZero(s slot, from, to int64) error {
	if from >= to {
		return nil
	}
	buf := make([]byte, to-from)
	if err := slotRead(s, buf, from); err != nil {
		return err
	}
	// Compared a block at a time with bytes.Equal (assembly): a Go loop
	// over every byte made this check most of fsactor's -race test time.
	for off := 0; off < len(buf); off += len(zeroBlock) {
		chunk := buf[off:min(off+len(zeroBlock), len(buf))]
		if bytes.Equal(chunk, zeroBlock[:len(chunk)]) {
			continue
		}
		for i, b := range chunk {
			if b != 0 {
				return fmt.Errorf("slot byte %d (past the size) is %#x", from+int64(off+i), b)
			}
		}
	}
	return nil
}

// zeroBlock is what checkZero compares slot tails with.
var zeroBlock [4096]byte

// checkArenas checks the arenas' accounting: every slot in use is named
// once (by an inode or the streamed snapshot), each arena's count of
// slots in use adds up, free slots are named by nobody and read zeros.
func (st *State) checkArenas() error {
	named := make(map[slot]uint64)
	name := func(s slot, who uint64) error {
		if other, dup := named[s]; dup {
			return fmt.Errorf("arena slot %d of class %d named by %d and %d", s.idx, s.a.class, other, who)
		}
		named[s] = who
		return nil
	}
	for ino, in := range st.inodes {
		if in.slot.a != nil {
			if err := name(in.slot, ino); err != nil {
				return err
			}
		}
	}
	if st.snap != nil {
		for ino, c := range st.snap.moved {
			if c.slot.a != nil {
				if err := name(c.slot, ino); err != nil {
					return err
				}
			}
		}
	}
	inUse := make(map[*arena]int32)
	for s := range named {
		inUse[s.a]++
	}
	return st.checkArenaCounts(named, inUse)
}

// checkArenaCounts checks each arena's counts and free slots against the
// slots named.
func (st *State) checkArenaCounts(named map[slot]uint64, inUse map[*arena]int32) error {
	count := 0
	for c := range st.arenas.classes {
		free := make(map[*arena]int32)
		for _, s := range st.arenas.free[c] {
			if _, ok := named[s]; ok || int(s.a.class) != c || s.idx >= s.a.next {
				return fmt.Errorf("free slot %d of class %d is in use or out of range", s.idx, c)
			}
			free[s.a]++
			if err := checkZero(s, 0, s.size()); err != nil {
				return fmt.Errorf("free %w", err)
			}
		}
		for _, a := range st.arenas.classes[c] {
			count++
			if int(a.class) != c || a.inUse != inUse[a] || a.inUse+a.leaked+free[a] > a.next ||
				int64(a.next) > arenaBytes/slotSizes[c] {
				return fmt.Errorf("arena of class %d: %d in use (named %d), %d free, %d handed out",
					c, a.inUse, inUse[a], free[a], a.next)
			}
		}
	}
	if count != st.arenas.count {
		return fmt.Errorf("%d arenas, counted %d", count, st.arenas.count)
	}
	return nil
}

// checkHandles checks the handle table against the inodes' counts.
func (st *State) checkHandles() error {
	counts := make(map[uint64]uint32, len(st.handles))
	for id, h := range st.handles {
		in, ok := st.inodes[h.ino]
		if !ok || id == 0 || id >= st.nextHandle {
			return fmt.Errorf("handle %d on inode %d (live %v, next %d)", id, h.ino, ok, st.nextHandle)
		}
		if h.dir != in.isDir() || h.dir && h.flags != 0 {
			return fmt.Errorf("handle %d: dir %v on mode %#o", id, h.dir, in.attr.Mode)
		}
		counts[h.ino]++
	}
	for ino, in := range st.inodes {
		if in.openHandles != counts[ino] {
			return fmt.Errorf("inode %d: openHandles %d, table has %d", ino, in.openHandles, counts[ino])
		}
	}
	return nil
}

// checkSpare checks the memfds kept for reuse are empty.
func (st *State) checkSpare() error {
	if len(st.spare) > maxSpare {
		return fmt.Errorf("%d spare memfds", len(st.spare))
	}
	for _, fd := range st.spare {
		if size, alloc, err := memfdStat(fd); err != nil || size != 0 || alloc != 0 {
			return fmt.Errorf("spare memfd %d: size %d alloc %d err %v", fd, size, alloc, err)
		}
	}
	return nil
}

// checkFollower checks a follower is read-only and emits nothing, and that
// the published LSN is the head.
func (st *State) checkFollower() error {
	if st.follower && (!st.readOnly || len(st.eff.Records) > 0) {
		return fmt.Errorf("follower: read-only %v, %d records emitted", st.readOnly, len(st.eff.Records))
	}
	if a := st.applied.Load(); a != st.lsn {
		return fmt.Errorf("applied lsn %d, head %d", a, st.lsn)
	}
	return nil
}
