package fsactor

import (
	"errors"
	"os"
	"slices"
	"syscall"
	"testing"

	"github.com/jacobsa/fuse/fuseops"
)

// TestResync: a follower resynced to a snapshot far from its own view
// (names added, removed, replaced, moved; contents, attributes, xattrs
// changed; new directories) holds that snapshot's volume, tells the kernel
// what it held, and keeps an inode it holds open or the kernel references.
func TestResync(t *testing.T) {
	p, f := newFollowing(t)
	q := p.mkdir(rootIno, "q", 0o755)
	keep := p.mkfile(q, "keep", "same")
	gone := p.mkfile(q, "gone", "deleted while open")
	held := p.mkfile(q, "held", "the kernel holds it")
	chg := p.mkfile(q, "chg", "old content")
	old := p.mkdir(rootIno, "olddir", 0o755)
	p.mkfile(old, "inside", "x")
	p.mkfile(q, "replaced", "old inode")
	follow(t, f, p.take())
	// The follower's kernel looks things up and opens gone.
	for _, n := range []string{"keep", "held", "chg", "replaced", "new"} {
		f.lookup(q, n)
	}
	f.lookup(rootIno, "q")
	fh := f.open(gone, syscall.O_RDONLY)
	// The primary moves on; the follower misses it all.
	for _, n := range []string{"gone", "held"} {
		p.must(&fuseops.UnlinkOp{Parent: id(q), Name: n})
	}
	w := p.open(chg, syscall.O_WRONLY)
	p.write(chg, w, 0, "new content, longer")
	p.release(w)
	p.must(&fuseops.SetXattrOp{Inode: id(keep), Name: "user.x", Value: []byte("v")})
	p.must(&fuseops.UnlinkOp{Parent: id(old), Name: "inside"})
	p.must(&fuseops.RmDirOp{Parent: id(rootIno), Name: "olddir"})
	nd := p.mkdir(q, "newdir", 0o700)
	p.mkfile(nd, "deep", "in a new directory")
	p.mkfile(q, "new", "a new message")
	p.mkfile(rootIno, "tmp", "replacing")
	p.must(&fuseops.RenameOp{OldParent: id(rootIno), OldName: "tmp", NewParent: id(q), NewName: "replaced"})
	p.must(&fuseops.CreateLinkOp{Parent: id(rootIno), Name: "keep2", Target: id(keep)})
	p.take()
	snap, err := p.st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	f.resync(snap)
	notes := append([]Note(nil), f.st.Effects().Notes...)
	f.st.Effects().Reset()
	sameVolume(t, p.st, f.st)
	for _, want := range []Note{
		{Kind: NoteDelete, Parent: q, Child: gone, Name: "gone"},
		{Kind: NoteDelete, Parent: q, Child: held, Name: "held"},
		{Kind: NoteInvalEntry, Parent: q, Name: "new"},
		{Kind: NoteInvalInode, Child: chg, Len: -1},
		{Kind: NoteInvalInode, Child: keep, Off: -1},
		{Kind: NoteInvalInode, Child: q, Len: -1},
	} {
		if !slices.Contains(notes, want) {
			t.Errorf("no note %+v in %+v", want, notes)
		}
	}
	if got := f.read(gone, fh, 0, 100); got != "deleted while open" {
		t.Fatalf("an open file that vanished reads %q", got)
	}
	f.release(fh)
	if f.live(gone) {
		t.Fatal("a vanished file not held by the kernel outlived its release")
	}
	f.freedByForget(held, 1, "the vanished inode")
	// Following goes on from the snapshot's LSN.
	p.mkfile(q, "after", "resync")
	follow(t, f, p.take())
	sameVolume(t, p.st, f.st)
}

// resync resyncs the follower h to snap, which must succeed, and checks
// its invariants.
func (h *harness) resync(snap *Snapshot) {
	h.t.Helper()
	if err := h.st.Resync(snap); err != nil {
		h.t.Fatalf("Resync: %v", err)
	}
	h.st.CheckInvariants()
}

// TestResyncBadSnapshotChangesNothing: a snapshot that does not hold
// together is refused before any change.
func TestResyncBadSnapshotChangesNothing(t *testing.T) {
	p, f := newFollowing(t)
	p.mkfile(rootIno, "a", "x")
	follow(t, f, p.take())
	snap, _ := p.st.Snapshot()
	snap.Inodes[0].Entries = append(snap.Inodes[0].Entries, SnapDirent{Name: "ghost", Ino: 77})
	if err := f.st.Resync(snap); !errors.Is(err, errBadSnapshot) {
		t.Fatalf("Resync of a bad snapshot: %v", err)
	}
	f.st.CheckInvariants()
	if len(f.st.Effects().Notes) != 0 || f.st.inodes[rootIno].dir.lookup("a") == 0 {
		t.Fatal("a refused snapshot changed the state")
	}
}

// TestResyncTypeChange: an inode number a snapshot gives another type is
// replaced when nothing holds it, refused while the kernel holds it.
func TestResyncTypeChange(t *testing.T) {
	p, f := newFollowing(t)
	ino := p.mkfile(rootIno, "x", "file")
	follow(t, f, p.take())
	// Another history: the same number is a directory.
	p2 := newHarness(t, Config{})
	if d := p2.mkdir(rootIno, "x", 0o755); d != ino {
		t.Fatalf("inode %d, want %d", d, ino)
	}
	p2.take()
	snap, _ := p2.st.Snapshot()
	f.lookup(rootIno, "x")
	if err := f.st.Resync(snap); err == nil {
		t.Fatal("a type change of a held inode was accepted")
	}
	f.forget(ino, 1)
	f.resync(snap)
	sameVolume(t, p2.st, f.st)
}

// TestPromoteState: after Promote the state emits records numbered after
// the snapshot, with content, and accepts mutations.
func TestPromoteState(t *testing.T) {
	p, f := newFollowing(t)
	ino := p.mkfile(rootIno, "m", "before")
	follow(t, f, p.take())
	snap, _ := p.st.Snapshot()
	fh := f.open(ino, syscall.O_RDONLY) // open before the promotion
	f.resync(snap)
	f.st.Effects().Reset()
	f.st.Promote(false)
	f.next = snap.LSN + 1
	w := f.open(ino, syscall.O_WRONLY)
	f.write(ino, w, 0, "after!")
	if lsn := f.must(&fuseops.FlushFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)}); lsn != snap.LSN+1 {
		t.Fatalf("flush through the old handle waits for %d, want %d", lsn, snap.LSN+1)
	}
	recs := f.take()
	if len(recs) != 1 || recs[0].Op != RecData || string(recs[0].Data) != "after!" {
		t.Fatalf("records after promotion: %+v", recs)
	}
	f.release(w)
	f.release(fh)
	f.mkdir(rootIno, "d", os.ModeDir|0o755)
}
