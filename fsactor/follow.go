package fsactor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"syscall"
)

// Follower mode: the volume mirrors a primary (DESIGN.md, "Followers").
//
// A follower's state changes only through its primary's records
// (ApplyRecords) and snapshots (Resync): every FUSE mutation answers EROFS,
// no step emits a record and no reply waits for durability (there is
// nothing of the follower's own to make durable). A remote record is
// applied on the actor, in order with FUSE ops, with the volume's inode
// numbers: an inode it creates enters with nlookup 0 (the kernel has never
// seen it), and one it unlinks stays while the kernel or an open handle
// still refers to it (maybeFree, as after a local unlink).
//
// The kernel's caches (entries and attributes live 60 s on a follower) are
// kept true by notes the apply puts in the Effects, which the loop hands
// to the notify pool after the step (kernel semantics: fs/fuse/dir.c
// fuse_reverse_inval_entry, fs/fuse/inode.c fuse_reverse_inval_inode):
//   - a name removed (unlink, rmdir, a name a rename replaced):
//     notify_delete(parent, child, name) — the kernel drops the dentry, marks
//     the parent changed and clears the child's in-core nlink (a child with
//     other names gets an attribute invalidation after it to get its nlink
//     back);
//   - a rename's source name: notify_delete for a file (then its attributes
//     are invalidated: it lives on under the new name), inval_entry for a
//     directory — notify_delete would mark an emptied directory S_DEAD in
//     the kernel, and the moved directory would answer ENOENT to every
//     lookup in it;
//   - a new name (create, link, rename's target when it named nothing):
//     inval_entry(parent, name), which drops a negative dentry the kernel
//     may cache for the entry timeout (ENOENT when there is none: benign);
//   - a directory whose entries changed: inval_inode(dir, 0, -1), its
//     attributes (nlink, mtime) and its page cache (the readdir cache,
//     should opendir ever ask for it); fuse_reverse_inval_entry does that
//     only when it found the dentry, so it is sent every time;
//   - content changes (data, setattr with a size change):
//     inval_inode(ino, 0, -1): attributes and every cached page (opens keep
//     the page cache, KeepPageCache);
//   - attribute-only changes (setattr keeping the size, xattrs, a link
//     count): inval_inode(ino, -1, 0): a negative offset invalidates the
//     attributes and leaves the pages.
//
// Notes about an inode, or a name in a directory, the kernel does not hold
// (nlookup 0: it never looked it up, or forgot it) are skipped: the kernel
// can hold no dentry below a directory whose inode it does not have.

// Errors of ApplyRecords, Resync and Promote.
var (
	// ErrOutOfOrder: the records do not continue the state's LSN (the
	// first is not LSN+1, or they are not consecutive). Nothing applied.
	ErrOutOfOrder = errors.New("fsactor: records out of order")
	// ErrBadRecord: a record the state cannot apply (malformed, or naming
	// an inode or name the state does not have). The records before it are
	// applied; it and those after it are not.
	ErrBadRecord = errors.New("fsactor: record cannot be applied")
	// ErrNotFollower: Resync or Promote of a volume that is not following.
	ErrNotFollower = errors.New("fsactor: not a follower")
)

// Following reports whether the state follows a primary (Config.Follower,
// until Promote).
func (st *State) Following() bool { return st.follower }

// AppliedLSN is the state's LSN: the last record emitted or applied, or
// the snapshot it was built or resynced from. Safe from any goroutine.
func (st *State) AppliedLSN() uint64 { return st.applied.Load() }

// setLSN moves the head and publishes it for AppliedLSN.
func (st *State) setLSN(lsn uint64) {
	st.lsn = lsn
	st.applied.Store(lsn)
}

// ApplyRecords applies records of the primary in LSN order: recs[0].LSN
// must be the state's LSN+1 and the LSNs consecutive, else it returns an
// error wrapping ErrOutOfOrder and applies nothing. Each record is checked
// whole before it changes anything; the first that cannot be applied ends
// the batch with an error wrapping ErrBadRecord, the records before it
// applied. The kernel notes go into the Effects (see the package comment
// above); no record is emitted.
func (st *State) ApplyRecords(recs []Record) error {
	for i := range recs {
		if want := st.lsn + 1 + uint64(i); recs[i].LSN != want {
			return fmt.Errorf("%w: record %d of %d has lsn %d, want %d", ErrOutOfOrder, i, len(recs), recs[i].LSN, want)
		}
	}
	for i := range recs {
		r := &recs[i]
		if err := st.applyRecord(r); err != nil {
			return fmt.Errorf("fsactor: apply lsn %d (%s, inode %d): %w", r.LSN, r.Op, r.Ino, err)
		}
		st.setLSN(r.LSN)
	}
	return nil
}

// badf makes an ErrBadRecord error.
func badf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadRecord}, args...)...)
}

// applyRecord applies one remote record: every check first, then the
// change (a failed record changes nothing, but for a content system call
// failing half way through a data record).
func (st *State) applyRecord(r *Record) error {
	if err := checkRecordShape(r); err != nil {
		return err
	}
	switch r.Op {
	case RecCreate:
		return st.applyCreate(r)
	case RecLink:
		return st.applyLink(r)
	case RecUnlink, RecRmdir:
		return st.applyRemove(r)
	case RecRename:
		return st.applyRename(r)
	case RecSetattr:
		return st.applySetattr(r)
	case RecSetXattr, RecRemoveXattr:
		return st.applyXattr(r)
	case RecData:
		return st.applyData(r)
	}
	return badf("unknown op %d", r.Op)
}

// checkRecordShape checks what a record says on its own: a known op, an
// inode, valid names where the op has them, a file type in the mode.
func checkRecordShape(r *Record) error {
	if r.Ino == 0 {
		return badf("inode 0")
	}
	if r.Op <= RecRename && checkName(r.Name) != 0 {
		return badf("bad name %q", r.Name)
	}
	if r.Op == RecRename && checkName(r.NewName) != 0 {
		return badf("bad new name %q", r.NewName)
	}
	if (r.Op == RecSetXattr || r.Op == RecRemoveXattr) && checkXattrName(r.XattrName) != 0 {
		return badf("bad xattr name %q", r.XattrName)
	}
	if r.Content != nil {
		return badf("content not read (Record.Content set)")
	}
	if r.Attr.Mode != 0 && !validType(r.Attr.Mode) {
		return badf("mode %#o has no valid file type", r.Attr.Mode)
	}
	if r.Attr.Size > MaxFileSize {
		return badf("size %d", r.Attr.Size)
	}
	return nil
}

// validType accepts the seven Linux file types.
func validType(mode uint32) bool {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFDIR, syscall.S_IFREG, syscall.S_IFLNK, syscall.S_IFIFO,
		syscall.S_IFCHR, syscall.S_IFBLK, syscall.S_IFSOCK:
		return true
	}
	return false
}

// liveDir returns the linked directory ino, or an ErrBadRecord error.
func (st *State) liveDir(ino uint64) (*inode, error) {
	d, ok := st.inodes[ino]
	if !ok || d.dir == nil || d.attr.Nlink == 0 {
		return nil, badf("directory %d missing", ino)
	}
	return d, nil
}

// liveInode returns the inode ino, named in the volume, or an ErrBadRecord
// error.
func (st *State) liveInode(ino uint64) (*inode, error) {
	in, ok := st.inodes[ino]
	if !ok || !inVolume(in) {
		return nil, badf("inode %d missing", ino)
	}
	return in, nil
}

// named checks that p/name names ino.
func (st *State) named(parent uint64, name string, ino uint64) (*inode, *inode, error) {
	p, err := st.liveDir(parent)
	if err != nil {
		return nil, nil, err
	}
	if got := p.dir.lookup(name); got != ino {
		return nil, nil, badf("%d/%q is inode %d, not %d", parent, name, got, ino)
	}
	return p, st.inodes[ino], nil
}

// takeAttr gives in the attributes a record carries (Mode 0: none),
// keeping what the state derives itself: the file type (checked equal),
// the link count (from the names) and a regular file's or symlink's size
// (from its content: applyData and applySetattr change it).
func takeAttr(in *inode, a Attr) {
	if a.Mode == 0 {
		return
	}
	nlink, size := in.attr.Nlink, in.attr.Size
	in.attr = a
	in.attr.Nlink = nlink
	if in.isReg() || in.isSymlink() {
		in.attr.Size = size
	}
}

// sameType checks a record keeps the inode's file type.
func sameType(in *inode, a Attr) error {
	if a.Mode != 0 && a.Mode&syscall.S_IFMT != in.fileType() {
		return badf("inode %d changes type %#o → %#o", in.ino, in.fileType(), a.Mode&syscall.S_IFMT)
	}
	return nil
}

// touchDir stamps a directory whose entries a record changed with the
// record's ctime, as the primary and the replicas do.
func touchDir(d *inode, ctime int64) {
	syncDirNlink(d)
	if ctime != 0 {
		d.touchM(ctime)
	}
}

func (st *State) applyCreate(r *Record) error {
	if _, dup := st.inodes[r.Ino]; dup || r.Ino == rootIno {
		return badf("inode %d exists", r.Ino)
	}
	p, err := st.liveDir(r.Parent)
	if err != nil {
		return err
	}
	switch {
	case r.Attr.Mode == 0:
		return badf("create without a mode")
	case p.dir.lookup(r.Name) != 0:
		return badf("%d/%q exists", r.Parent, r.Name)
	case r.Attr.Mode&syscall.S_IFMT == syscall.S_IFLNK && (r.Target == "" || r.Attr.Size != uint64(len(r.Target))):
		return badf("symlink target of %d bytes, size %d", len(r.Target), r.Attr.Size)
	case r.Attr.Mode&syscall.S_IFMT != syscall.S_IFLNK && r.Target != "":
		return badf("a target for a non-symlink")
	}
	in := &inode{ino: r.Ino, content: noContent, attr: r.Attr, target: r.Target, lastLSN: r.LSN}
	in.attr.Nlink = 1
	if in.isDir() {
		in.attr.Nlink, in.attr.Size, in.dir = 2, r.Attr.Size, newDir(p.ino)
	}
	st.inodes[in.ino] = in
	st.nextIno = max(st.nextIno, in.ino+1)
	p.dir.add(r.Name, in.ino, in.isDir())
	touchDir(p, r.Attr.Ctime)
	st.noteNewName(p, r.Name)
	return nil
}

func (st *State) applyLink(r *Record) error {
	in, err := st.liveInode(r.Ino)
	if err != nil {
		return err
	}
	p, err := st.liveDir(r.Parent)
	if err != nil {
		return err
	}
	switch {
	case in.isDir():
		return badf("link of directory %d", r.Ino)
	case p.dir.lookup(r.Name) != 0:
		return badf("%d/%q exists", r.Parent, r.Name)
	case in.attr.Nlink >= maxNlink:
		return badf("inode %d has %d links", r.Ino, in.attr.Nlink)
	}
	if err := sameType(in, r.Attr); err != nil {
		return err
	}
	p.dir.add(r.Name, in.ino, false)
	in.attr.Nlink++
	takeAttr(in, r.Attr)
	in.lastLSN = r.LSN
	touchDir(p, r.Attr.Ctime)
	st.noteNewName(p, r.Name)
	st.noteAttrs(in)
	return nil
}

// applyRemove applies an unlink or an rmdir.
func (st *State) applyRemove(r *Record) error {
	p, child, err := st.named(r.Parent, r.Name, r.Ino)
	if err != nil {
		return err
	}
	switch {
	case r.Op == RecRmdir && (!child.isDir() || child.dir.live() > 0):
		return badf("rmdir of %d: not an empty directory", r.Ino)
	case r.Op == RecUnlink && child.isDir():
		return badf("unlink of directory %d", r.Ino)
	}
	if err := sameType(child, r.Attr); err != nil {
		return err
	}
	p.dir.remove(r.Name, child.isDir())
	if child.isDir() {
		child.attr.Nlink = 0
	} else {
		child.attr.Nlink--
		takeAttr(child, r.Attr)
	}
	child.lastLSN = r.LSN
	touchDir(p, r.Attr.Ctime)
	st.noteGoneName(p, child, r.Name)
	st.dropIfGone(child)
	return nil
}

// dropIfGone frees an inode that lost its last name, unless the kernel or
// a handle still holds it (then FORGET or RELEASE frees it); its content
// goes with it.
func (st *State) dropIfGone(in *inode) {
	if inVolume(in) {
		return
	}
	if in.dir != nil {
		in.attr.Nlink = 0
	}
	st.maybeFree(in)
}

func (st *State) applySetattr(r *Record) error {
	in, err := st.liveInode(r.Ino)
	if err != nil {
		return err
	}
	if r.Attr.Mode == 0 {
		return badf("setattr without a mode")
	}
	if err := sameType(in, r.Attr); err != nil {
		return err
	}
	if in.isSymlink() && r.Attr.Size != in.attr.Size {
		return badf("symlink %d changes size", r.Ino)
	}
	resized := in.isReg() && r.Attr.Size != in.attr.Size
	if resized {
		if e := st.setSize(in, r.Attr.Size); e != 0 {
			return fmt.Errorf("resize inode %d to %d: %w", r.Ino, r.Attr.Size, e)
		}
	}
	takeAttr(in, r.Attr)
	in.lastLSN = r.LSN
	if resized {
		st.noteContent(in)
	} else {
		st.noteAttrs(in)
	}
	return nil
}

func (st *State) applyXattr(r *Record) error {
	in, err := st.liveInode(r.Ino)
	if err != nil {
		return err
	}
	if err := sameType(in, r.Attr); err != nil {
		return err
	}
	i, found := in.findXattr(r.XattrName)
	switch {
	case r.Op == RecRemoveXattr && !found:
		return badf("inode %d has no xattr %q", r.Ino, r.XattrName)
	case r.Op == RecSetXattr && len(r.Data) > xattrSizeMax:
		return badf("xattr value of %d bytes", len(r.Data))
	}
	switch {
	case r.Op == RecRemoveXattr:
		in.xattrs = slices.Delete(in.xattrs, i, i+1)
	case found:
		in.xattrs[i].value = cloneValue(r.Data)
	default:
		in.xattrs = slices.Insert(in.xattrs, i, xattr{name: r.XattrName, value: cloneValue(r.Data)})
	}
	takeAttr(in, r.Attr)
	in.lastLSN = r.LSN
	st.noteAttrs(in)
	return nil
}

// cloneValue copies an xattr value (never nil: an empty value exists).
func cloneValue(b []byte) []byte { return append([]byte{}, b...) }

// applyData replaces a regular file's whole content by the record's
// extents and bytes, and its size by the record's — or, for a partial
// record, only the bytes inside its ranges (patchContent). The one
// function that applies a data record.
func (st *State) applyData(r *Record) error {
	in, err := st.liveInode(r.Ino)
	if err != nil {
		return err
	}
	switch {
	case !in.isReg():
		return badf("data for non-file %d", r.Ino)
	case r.Attr.Mode == 0:
		return badf("data without attributes")
	}
	if err := sameType(in, r.Attr); err != nil {
		return err
	}
	if err := checkExtents(r.Extents, len(r.Data), r.Attr.Size); err != nil {
		return badf("inode %d: %v", r.Ino, err)
	}
	if err := checkRanges(r); err != nil {
		return badf("inode %d: %v", r.Ino, err)
	}
	var e syscall.Errno
	if r.Partial {
		e = st.patchContent(in, r.Attr.Size, r.Ranges, r.Extents, r.Data)
	} else {
		e = st.replaceContent(in, r.Attr.Size, r.Extents, r.Data)
	}
	if e != 0 {
		return fmt.Errorf("content of inode %d: %w", r.Ino, e)
	}
	takeAttr(in, r.Attr)
	in.lastLSN = r.LSN
	st.noteContent(in)
	return nil
}

// replaceContent makes in's content size bytes holding data at exts (as
// a snapshot or a data record carries it): the old content is dropped
// (left to a view or a streamed snapshot that still reads it), the new one
// put in through the content helpers (content.go).
func (st *State) replaceContent(in *inode, size uint64, exts []Extent, data []byte) syscall.Errno {
	st.dropContent(in)
	in.attr.Size = size
	return st.putContent(in, exts, data)
}

// Kernel notes of remote changes (the package comment above says why each).

// noteNewName: parent/name now exists; a negative dentry must go.
func (st *State) noteNewName(p *inode, name string) {
	if p.nlookup == 0 {
		return
	}
	st.note(Note{Kind: NoteInvalEntry, Parent: p.ino, Name: name})
	st.note(Note{Kind: NoteInvalInode, Child: p.ino, Len: -1})
}

// noteGoneName: parent/name (child) was removed or replaced.
func (st *State) noteGoneName(p, child *inode, name string) {
	if p.nlookup == 0 {
		return
	}
	st.note(Note{Kind: NoteDelete, Parent: p.ino, Child: child.ino, Name: name})
	st.note(Note{Kind: NoteInvalInode, Child: p.ino, Len: -1})
	if inVolume(child) {
		st.noteAttrs(child) // notify_delete cleared its in-core nlink
	}
}

// noteAttrs: in's attributes changed, its content did not.
func (st *State) noteAttrs(in *inode) {
	if in.nlookup > 0 {
		st.note(Note{Kind: NoteInvalInode, Child: in.ino, Off: -1})
	}
}

// noteContent: in's content (and attributes) changed.
func (st *State) noteContent(in *inode) {
	if in.nlookup > 0 {
		st.note(Note{Kind: NoteInvalInode, Child: in.ino, Len: -1})
	}
}

// ApplyRecords applies records of the primary through the actor's mailbox,
// in order with FUSE ops (State.ApplyRecords says what is checked), and
// returns once they are applied and their kernel notes posted to the
// notify pool. The records are the state's from then on (it keeps xattr
// values and reads Data only during the call). If ctx ends before the
// actor got to them, they may still be applied later.
func (s *Server) ApplyRecords(ctx context.Context, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	var err error
	if cerr := s.Do(ctx, func(st *State) { err = st.ApplyRecords(recs) }); cerr != nil {
		return cerr
	}
	return err
}

// AppliedLSN is the LSN of the last record applied (or emitted), or of
// the snapshot the state was built or resynced from. Safe from any
// goroutine: status and lag read it.
func (s *Server) AppliedLSN() uint64 {
	if s.st == nil {
		return 0
	}
	return s.st.AppliedLSN()
}
