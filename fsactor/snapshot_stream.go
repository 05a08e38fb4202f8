package fsactor

import (
	"context"
	"errors"
	"fmt"
	"syscall"
)

// A streamed snapshot: the resync of a replica whose log position the
// primary's log no longer reaches.
//
// State.Snapshot copies every file's content on the actor: the actor (and
// with it every FUSE request) stops for as long as reading the whole
// volume takes, and the volume's content sits in the Go heap a second
// time while it is sent. A streamed snapshot takes only the inodes and
// entries on the actor, marks every file with content frozen, and hands
// the content out one file at a time (snapshotData), each read a short
// call on the actor between FUSE requests.
//
// Copy on write keeps it consistent: the first change to a frozen file's
// content (write, truncate, fallocate, or its end) moves the memfd it had
// into the snapshot and gives the file a copy, so the snapshot reads the
// content as of its LSN. The snapshot's descriptors stay on the actor's
// goroutine: it names files by inode number (never reused), not by
// descriptor (a data record's view is the one that leaves, with a dup of
// its own: content_view.go). One streamed snapshot at a time (Server.StreamSnapshot).

// snapSession is the state of the streamed snapshot in progress.
type snapSession struct {
	// sizes holds, per frozen file, its size when the snapshot was taken:
	// the snapshot reads its extents below it.
	sizes map[uint64]int64
	// moved holds the contents of frozen files that changed (or went)
	// since: the snapshot's content, released when it ends.
	moved map[uint64]content
}

var errSnapshotBusy = errors.New("fsactor: a streamed snapshot is in progress")

// streamSnapshot starts a streamed snapshot: the volume at the current LSN,
// regular files with their content left out (DataLen says how many bytes
// its extents hold; snapshotData reads it).
func (st *State) streamSnapshot() (*Snapshot, error) {
	if st.snap != nil {
		return nil, errSnapshotBusy
	}
	ses := &snapSession{sizes: make(map[uint64]int64), moved: make(map[uint64]content)}
	s, err := st.snapshot(false, func(in *inode) (int64, error) {
		if !in.hasContent() {
			return 0, nil
		}
		ses.sizes[in.ino] = int64(in.attr.Size)
		_, n, err := st.extents(in)
		return n, err
	})
	if err != nil {
		return nil, err
	}
	for ino := range ses.sizes {
		st.inodes[ino].frozen = true
	}
	st.snap = ses
	return s, nil
}

// snapshotData returns the content of file ino as of the streamed
// snapshot: its extents and their bytes.
func (st *State) snapshotData(ino uint64) ([]Extent, []byte, error) {
	ses := st.snap
	if ses == nil {
		return nil, nil, errors.New("fsactor: no streamed snapshot in progress")
	}
	size, ok := ses.sizes[ino]
	if !ok {
		return nil, nil, fmt.Errorf("fsactor: inode %d has no content in the snapshot", ino)
	}
	c, ok := ses.moved[ino]
	if !ok {
		in := st.inodes[ino]
		if in == nil || !in.frozen {
			return nil, nil, fmt.Errorf("fsactor: inode %d: the snapshot's content is gone", ino)
		}
		c = in.content
	}
	return c.copyOut(size)
}

// endSnapshot ends the streamed snapshot: the moved memfds are closed and
// no file is frozen any more.
func (st *State) endSnapshot() {
	ses := st.snap
	if ses == nil {
		return
	}
	for _, c := range ses.moved {
		st.releaseMoved(c)
	}
	for ino := range ses.sizes {
		if in := st.inodes[ino]; in != nil {
			in.frozen = false
		}
	}
	st.snap = nil
}

// thaw gives a frozen file a copy of its content before that content
// changes (ensureMemfd); the streamed snapshot keeps the memfd it had.
func (st *State) thaw(in *inode) syscall.Errno {
	fd, err := st.newMemfd()
	if err != nil {
		return st.storageErr(err)
	}
	if err := memfdCopy(fd, in.fd, int64(in.attr.Size)); err != nil {
		memfdClose(fd)
		return errnoOf(err)
	}
	st.dropContent(in) // frozen: the memfd goes to the snapshot
	in.fd = fd
	return st.remeasure(in)
}

// StreamSnapshot takes a streamed snapshot (see snapSession): the inodes
// now, each file's content later through snap.Content, one file at a time
// (each read ends with ctx). snap.Release must be called when done with
// it; until then another StreamSnapshot waits. The actor must be a *State.
func (s *Server) StreamSnapshot(ctx context.Context) (snap *Snapshot, err error) {
	select {
	case s.snapSlot <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if cerr := s.Do(ctx, func(st *State) { snap, err = st.streamSnapshot() }); err == nil {
		err = cerr
	}
	if err != nil {
		<-s.snapSlot
		return nil, err
	}
	snap.Content = func(ino uint64) (exts []Extent, b []byte, err error) {
		if cerr := s.Do(ctx, func(st *State) { exts, b, err = st.snapshotData(ino) }); cerr != nil {
			return nil, nil, cerr
		}
		return exts, b, err
	}
	snap.Release = func() {
		// The actor may have stopped: then its memfds are gone with it.
		_ = s.Do(context.Background(), func(st *State) { st.endSnapshot() })
		<-s.snapSlot
	}
	return snap, nil
}
