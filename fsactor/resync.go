package fsactor

import (
	"context"
	"fmt"
	"maps"
	"slices"
)

// Resync replaces a follower's view by a snapshot in place, without
// unmounting: the kernel keeps its inodes, open files stay open.
//
// The snapshot is checked whole first, by building its inodes and names
// into a scratch state without contents (restoreShape: restore's checks);
// a bad snapshot changes nothing. Then the live state is brought to it:
//  1. names: every name of a live directory that the snapshot does not
//     have, or that names another inode there, is removed
//     (notify_delete, and the directory's inval_inode);
//  2. inodes: each inode of the snapshot the state has (same number, same
//     file type) takes its attributes, xattrs and target; its content is
//     replaced when its size or mtime differ, or when its ctime differs
//     and its bytes do (every change to a file's content moves its ctime,
//     which utimes cannot set, so an equal ctime means equal content and
//     no byte is read to compare; a moved ctime may be an attribute
//     change, so the bytes decide); the kernel gets inval_inode(0, -1)
//     for a new content, inval_inode(-1, 0) for new attributes, for what
//     it holds. Inodes the state lacks are inserted with nlookup 0, their
//     directory parts from the scratch state;
//  3. names: each name of the snapshot a live directory lacks is added
//     (inval_entry: the kernel may cache it as absent);
//  4. inodes the snapshot lacks lose their link counts and go, unless the
//     kernel or an open handle still holds them (maybeFree): a process
//     reading a file that vanished reads it to its end.
//
// An inode number the snapshot gives another file type than the state's
// (possible only when the follower applied records a new primary did not
// recover) is replaced when nothing holds the old inode; while the kernel
// or a handle does, Resync fails (the kernel would meet one node id with
// two types) and the mount must be remade.
//
// The state's LSN becomes snap.LSN (older or newer: the caller decided),
// nextIno at least snap.NextIno, and no inode's last record is above the
// new LSN. A memfd system call failing half way (out of memory) leaves the
// state partly resynced and returns the error: the caller resyncs again.
func (st *State) Resync(snap *Snapshot) error {
	ns := &State{} // restoreShape sizes its inode table
	if _, err := ns.restoreShape(snap); err != nil {
		return fmt.Errorf("fsactor: resync to lsn %d: %w", snap.LSN, err)
	}
	if err := st.checkResyncTypes(ns); err != nil {
		return fmt.Errorf("fsactor: resync to lsn %d: %w", snap.LSN, err)
	}
	byIno := make(map[uint64]*SnapInode, len(snap.Inodes))
	for i := range snap.Inodes {
		byIno[snap.Inodes[i].Ino] = &snap.Inodes[i]
	}
	st.resyncRemoveNames(ns)
	vanished := st.resyncVanished(ns)
	if err := st.resyncInodes(ns, byIno); err != nil {
		return fmt.Errorf("fsactor: resync to lsn %d: %w", snap.LSN, err)
	}
	st.resyncAddNames(ns)
	for _, in := range vanished {
		st.maybeFree(in)
	}
	st.nextIno = max(st.nextIno, snap.NextIno)
	for _, in := range st.inodes {
		in.lastLSN = min(in.lastLSN, snap.LSN)
	}
	st.setLSN(snap.LSN)
	return nil
}

// sameKind says whether a live inode and a scratch one are the same file.
func sameKind(in, sn *inode) bool { return sn != nil && in.fileType() == sn.fileType() }

// checkResyncTypes refuses a snapshot that gives an inode the kernel or a
// handle holds another file type.
func (st *State) checkResyncTypes(ns *State) error {
	for ino, in := range st.inodes {
		sn, ok := ns.inodes[ino]
		if ok && !sameKind(in, sn) && (in.nlookup > 0 || in.openHandles > 0) && ino != rootIno {
			return fmt.Errorf("inode %d changes type %#o → %#o while the kernel or a handle holds it",
				ino, in.fileType(), sn.fileType())
		}
	}
	return nil
}

// resyncRemoveNames removes every name the snapshot does not have as it
// is, in every live directory (step 1).
func (st *State) resyncRemoveNames(ns *State) {
	for _, d := range st.inodes {
		if d.dir == nil || d.dir.live() == 0 {
			continue
		}
		nd := ns.inodes[d.ino]
		for _, e := range slices.Clone(d.dir.ents) {
			if e.ino == 0 {
				continue
			}
			child := st.inodes[e.ino]
			if sameKind(d, nd) && nd.dir.lookup(e.name) == e.ino && sameKind(child, ns.inodes[e.ino]) {
				continue
			}
			d.dir.remove(e.name, child.isDir())
			if !child.isDir() {
				child.attr.Nlink--
			}
			st.noteGoneName(d, child, e.name)
		}
	}
}

// resyncVanished takes the inodes the snapshot lacks (or gives another
// type) out of the volume: link counts 0, out of the inode table when the
// number is taken by the snapshot's (nothing holds them then:
// checkResyncTypes). maybeFree frees the rest at the end (step 4).
func (st *State) resyncVanished(ns *State) []*inode {
	var gone []*inode
	for ino, in := range st.inodes {
		if ino == rootIno || sameKind(in, ns.inodes[ino]) {
			continue
		}
		in.attr.Nlink = 0
		if _, taken := ns.inodes[ino]; taken {
			st.dropContent(in)
			delete(st.inodes, ino)
			continue
		}
		gone = append(gone, in)
	}
	return gone
}

// resyncInodes updates the inodes both have and inserts the new ones
// (step 2), in inode order.
func (st *State) resyncInodes(ns *State, byIno map[uint64]*SnapInode) error {
	for _, ino := range slices.Sorted(maps.Keys(ns.inodes)) {
		sn, si := ns.inodes[ino], byIno[ino]
		in, ok := st.inodes[ino]
		if !ok {
			in := *sn // the scratch inode's names stay for resyncAddNames
			in.dir = resetDir(sn)
			if in.dir == nil {
				in.attr.Nlink = 0 // resyncAddNames counts its names
			}
			st.inodes[ino] = &in
			if e := st.putContent(&in, si.Extents, si.Data); e != 0 {
				return fmt.Errorf("content of inode %d: %w", ino, e)
			}
			continue
		}
		if err := st.resyncInode(in, sn, si); err != nil {
			return err
		}
	}
	return nil
}

// resetDir empties a new directory's scratch part: resyncAddNames adds its
// names like any directory's, so link counts and subdirectory counts come
// out of one path.
func resetDir(sn *inode) *dir {
	if sn.dir == nil {
		return nil
	}
	return newDir(sn.dir.parent)
}

// resyncInode brings one live inode to the snapshot's.
func (st *State) resyncInode(in, sn *inode, si *SnapInode) error {
	old := in.attr
	changed := in.isReg() && (old.Size != sn.attr.Size || old.Mtime != sn.attr.Mtime ||
		old.Ctime != sn.attr.Ctime && !st.sameContent(in, si))
	if changed {
		if e := st.replaceContent(in, sn.attr.Size, si.Extents, si.Data); e != 0 {
			return fmt.Errorf("content of inode %d: %w", in.ino, e)
		}
	}
	attrsChanged := old != sn.attr || !slices.EqualFunc(in.xattrs, sn.xattrs, sameXattr)
	nlink, size := in.attr.Nlink, in.attr.Size
	in.attr = sn.attr
	in.attr.Nlink = nlink // names decide it: resyncAddNames
	if in.isReg() {
		in.attr.Size = size
	}
	in.xattrs, in.target = sn.xattrs, sn.target
	if in.dir != nil {
		in.dir.parent = sn.dir.parent
	}
	switch {
	case changed:
		st.noteContent(in)
	case attrsChanged:
		st.noteAttrs(in)
	}
	return nil
}

// sameContent compares a file's content with a snapshot's (a read of the
// file: only for a file whose ctime moved while its size and mtime did
// not, which an attribute change or a utimes after a write does).
func (st *State) sameContent(in *inode, si *SnapInode) bool {
	exts, data, err := st.readContent(in)
	if err != nil {
		return false
	}
	norm := func(e []Extent) []Extent {
		if len(e) == 1 && e[0].Off == 0 {
			return nil
		}
		return e
	}
	return slices.Equal(norm(exts), norm(si.Extents)) && string(data) == string(si.Data)
}

func sameXattr(a, b xattr) bool { return a.name == b.name && string(a.value) == string(b.value) }

// resyncAddNames adds the snapshot's names that live directories lack, in
// the snapshot's order (step 3), then sets every directory's link count.
func (st *State) resyncAddNames(ns *State) {
	for _, ino := range slices.Sorted(maps.Keys(ns.inodes)) {
		nd := ns.inodes[ino]
		if nd.dir == nil {
			continue
		}
		d, added := st.inodes[ino], false
		for _, e := range nd.dir.ents {
			if e.ino == 0 || d.dir.lookup(e.name) != 0 {
				continue
			}
			child := st.inodes[e.ino]
			d.dir.add(e.name, e.ino, child.isDir())
			if !child.isDir() {
				child.attr.Nlink++
			}
			if d.nlookup > 0 {
				st.note(Note{Kind: NoteInvalEntry, Parent: d.ino, Name: e.name})
			}
			added = true
		}
		if added && d.nlookup > 0 {
			st.note(Note{Kind: NoteInvalInode, Child: d.ino, Len: -1})
		}
	}
	for _, in := range st.inodes {
		if in.dir != nil && (inVolume(in) || in.dir.live() > 0) {
			in.attr.Nlink = 2 + in.dir.subdirs
		}
	}
}

// Promote ends following: the state takes its own records from now on,
// numbered from its LSN+1 (Resync set it to the snapshot's), with contents
// unless discardContent (a sink that keeps nothing: Config.DiscardContent),
// and mutations are allowed again.
func (st *State) Promote(discardContent bool) {
	st.follower, st.readOnly, st.discard = false, false, discardContent
	st.cfg.Follower, st.cfg.ReadOnly, st.cfg.DiscardContent = false, false, discardContent
}

// withContents returns snap with every file's content inline: a streamed
// snapshot's (DataLen > 0, Data nil) is read through snap.Content, on the
// caller's goroutine (never on the actor: the snapshot may be this very
// server's). snap itself is not changed.
func withContents(snap *Snapshot) (*Snapshot, error) {
	if snap.Content == nil {
		return snap, nil
	}
	out := *snap
	out.Inodes = slices.Clone(snap.Inodes)
	for i := range out.Inodes {
		si := &out.Inodes[i]
		if si.DataLen == 0 || si.Data != nil {
			continue
		}
		var err error
		if si.Extents, si.Data, err = snap.Content(si.Ino); err != nil {
			return nil, fmt.Errorf("fsactor: content of inode %d: %w", si.Ino, err)
		}
	}
	return &out, nil
}

// Resync replaces the follower's view in place by snap (State.Resync says
// how), on the actor, and returns once it is applied and its kernel notes
// posted. snap.LSN may be anything: the caller decided it is not older.
// Only a follower resyncs (ErrNotFollower).
func (s *Server) Resync(ctx context.Context, snap *Snapshot) error {
	snap, err := withContents(snap)
	if err != nil {
		return err
	}
	if cerr := s.Do(ctx, func(st *State) {
		if !st.follower {
			err = fmt.Errorf("fsactor: resync volume %q: %w", s.cfg.Volume, ErrNotFollower)
			return
		}
		err = st.Resync(snap)
	}); cerr != nil {
		return cerr
	}
	return err
}

// Promote turns a follower into the primary without unmounting:
// Resync(snap), then the state takes sink (records numbered from
// snap.LSN+1, data records with content unless sink is a *DiscardSink),
// and Follower and ReadOnly are cleared. Files open before keep working:
// a FLUSH of one written since ships it and waits like any other. All of
// it is one step of the actor: no FUSE op sees it half done.
func (s *Server) Promote(ctx context.Context, sink Sink, snap *Snapshot) error {
	if sink == nil {
		return fmt.Errorf("fsactor: promote volume %q: no sink", s.cfg.Volume)
	}
	snap, err := withContents(snap)
	if err != nil {
		return err
	}
	_, discard := sink.(*DiscardSink)
	cerr := s.Do(ctx, func(st *State) {
		if !st.follower {
			err = fmt.Errorf("fsactor: promote volume %q: %w", s.cfg.Volume, ErrNotFollower)
			return
		}
		if err = st.Resync(snap); err != nil {
			return
		}
		st.Promote(discard)
		s.loop.promote(sink)
	})
	if cerr != nil {
		return cerr
	}
	return err
}

// promote hands the loop its new sink (on the actor: apply reads l.sink;
// tasks carry the sink they started with) and forgets an earlier fencing,
// so a fencing of the new term is logged again.
func (l *loop) promote(sink Sink) {
	l.sink = sink
	l.fenced = false
	l.log.Info("volume promoted: mutations allowed, records go to the new sink")
}
