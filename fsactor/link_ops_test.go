package fsactor

import (
	"slices"
	"syscall"
	"testing"

	"github.com/jacobsa/fuse/fuseops"
)

func TestRenameMatrix(t *testing.T) {
	// Each case starts from a fresh tree (see harness.tree):
	// /d/f /f /l /e/ /p and a removed /gone.
	type setup func(h *harness, tr tree) *fuseops.RenameOp
	cases := []struct {
		name string
		mk   setup
		want syscall.Errno
	}{
		{"file to new name", func(h *harness, tr tree) *fuseops.RenameOp {
			return &fuseops.RenameOp{OldParent: rootIno, OldName: "f", NewParent: rootIno, NewName: "g"}
		}, 0},
		{"file to other dir", func(h *harness, tr tree) *fuseops.RenameOp {
			return &fuseops.RenameOp{OldParent: rootIno, OldName: "f", NewParent: id(tr.e), NewName: "f"}
		}, 0},
		{"file over file", func(h *harness, tr tree) *fuseops.RenameOp {
			return &fuseops.RenameOp{OldParent: rootIno, OldName: "f", NewParent: id(tr.d), NewName: "f"}
		}, 0},
		{"file over empty dir", func(h *harness, tr tree) *fuseops.RenameOp {
			return &fuseops.RenameOp{OldParent: rootIno, OldName: "f", NewParent: rootIno, NewName: "e"}
		}, syscall.EISDIR},
		{"dir over file", func(h *harness, tr tree) *fuseops.RenameOp {
			return &fuseops.RenameOp{OldParent: rootIno, OldName: "e", NewParent: rootIno, NewName: "f"}
		}, syscall.ENOTDIR},
		{"dir over empty dir", func(h *harness, tr tree) *fuseops.RenameOp {
			return &fuseops.RenameOp{OldParent: rootIno, OldName: "d", NewParent: rootIno, NewName: "e"}
		}, 0},
		{"dir over non-empty dir", func(h *harness, tr tree) *fuseops.RenameOp {
			return &fuseops.RenameOp{OldParent: rootIno, OldName: "e", NewParent: rootIno, NewName: "d"}
		}, syscall.ENOTEMPTY},
		{"dir into itself", func(h *harness, tr tree) *fuseops.RenameOp {
			return &fuseops.RenameOp{OldParent: rootIno, OldName: "d", NewParent: id(tr.d), NewName: "x"}
		}, syscall.EINVAL},
		{"dir into its subdir", func(h *harness, tr tree) *fuseops.RenameOp {
			sub := h.mkdir(tr.d, "sub", 0o755)
			subsub := h.mkdir(sub, "subsub", 0o755)
			return &fuseops.RenameOp{OldParent: rootIno, OldName: "d", NewParent: id(subsub), NewName: "x"}
		}, syscall.EINVAL},
		{"dir to other dir", func(h *harness, tr tree) *fuseops.RenameOp {
			return &fuseops.RenameOp{OldParent: rootIno, OldName: "d", NewParent: id(tr.e), NewName: "d"}
		}, 0},
		{"dir onto its ancestor", func(h *harness, tr tree) *fuseops.RenameOp {
			sub := h.mkdir(tr.d, "sub", 0o755)
			return &fuseops.RenameOp{OldParent: id(sub), OldName: "..", NewParent: rootIno, NewName: "d"}
		}, syscall.EINVAL},
		{"non-empty ancestor as target", func(h *harness, tr tree) *fuseops.RenameOp {
			h.mkdir(tr.d, "sub", 0o755)
			return &fuseops.RenameOp{OldParent: id(tr.d), OldName: "sub", NewParent: rootIno, NewName: "d"}
		}, syscall.ENOTEMPTY},
		{"onto a hard link of the same inode", func(h *harness, tr tree) *fuseops.RenameOp {
			h.must(&fuseops.CreateLinkOp{Parent: id(tr.e), Name: "hard", Target: id(tr.f)})
			return &fuseops.RenameOp{OldParent: rootIno, OldName: "f", NewParent: id(tr.e), NewName: "hard"}
		}, 0},
		{"onto itself", func(h *harness, tr tree) *fuseops.RenameOp {
			return &fuseops.RenameOp{OldParent: rootIno, OldName: "f", NewParent: rootIno, NewName: "f"}
		}, 0},
		{"dot", func(h *harness, tr tree) *fuseops.RenameOp {
			return &fuseops.RenameOp{OldParent: id(tr.d), OldName: ".", NewParent: rootIno, NewName: "x"}
		}, syscall.EINVAL},
		{"onto dotdot", func(h *harness, tr tree) *fuseops.RenameOp {
			return &fuseops.RenameOp{OldParent: rootIno, OldName: "f", NewParent: id(tr.d), NewName: ".."}
		}, syscall.EINVAL},
		{"missing source", func(h *harness, tr tree) *fuseops.RenameOp {
			return &fuseops.RenameOp{OldParent: rootIno, OldName: "x", NewParent: rootIno, NewName: "y"}
		}, syscall.ENOENT},
		{"into a removed dir", func(h *harness, tr tree) *fuseops.RenameOp {
			return &fuseops.RenameOp{OldParent: rootIno, OldName: "f", NewParent: id(tr.gone), NewName: "f"}
		}, syscall.ENOENT},
		{"into a file", func(h *harness, tr tree) *fuseops.RenameOp {
			return &fuseops.RenameOp{OldParent: rootIno, OldName: "e", NewParent: id(tr.f), NewName: "x"}
		}, syscall.ENOTDIR},
		{"from a missing dir", func(h *harness, tr tree) *fuseops.RenameOp {
			return &fuseops.RenameOp{OldParent: 999, OldName: "f", NewParent: rootIno, NewName: "x"}
		}, syscall.ENOENT},
		{"long new name", func(h *harness, tr tree) *fuseops.RenameOp {
			long := string(make([]byte, 256))
			return &fuseops.RenameOp{OldParent: rootIno, OldName: "f", NewParent: rootIno, NewName: long}
		}, syscall.ENAMETOOLONG},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			tr := h.tree()
			op := c.mk(h, tr)
			h.take()
			w, err := h.do(op)
			got := syscall.Errno(0)
			if err != nil {
				got = err.(syscall.Errno)
			}
			if got != c.want {
				t.Fatalf("errno %v, want %v", got, c.want)
			}
			recs := h.take()
			if got != 0 {
				if len(recs) != 0 {
					t.Fatalf("failed rename emitted %v", recs)
				}
				return
			}
			if w != h.st.lsn || w == 0 {
				t.Fatalf("rename waits for %d, head %d", w, h.st.lsn)
			}
			h.checkRenamed(op, recs)
		})
	}
}

// checkRenamed checks the names after a successful rename.
func (h *harness) checkRenamed(op *fuseops.RenameOp, recs []*Record) {
	h.t.Helper()
	dst, err := h.lookup(uint64(op.NewParent), op.NewName)
	if err != nil {
		h.t.Fatalf("new name: %v", err)
	}
	if len(recs) == 0 { // a no-op: both names still there
		if src, err := h.lookup(uint64(op.OldParent), op.OldName); err != nil || src != dst {
			h.t.Fatalf("no-op rename lost the old name: %d %v", src, err)
		}
		return
	}
	if _, err := h.lookup(uint64(op.OldParent), op.OldName); err != syscall.ENOENT {
		h.t.Fatalf("old name still there: %v", err)
	}
	r := recs[0]
	if len(recs) != 1 || r.Op != RecRename || r.Ino != dst || r.Parent != uint64(op.OldParent) ||
		r.Name != op.OldName || r.NewParent != uint64(op.NewParent) || r.NewName != op.NewName {
		h.t.Fatalf("records %+v", recs)
	}
	if in := h.st.inodes[dst]; in.dir != nil && in.dir.parent != uint64(op.NewParent) {
		h.t.Fatal("moved dir's .. not updated")
	}
}

func TestRenameOverFileDropsALink(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.mkfile(rootIno, "a", "A")
	b := h.mkfile(rootIno, "b", "B")
	h.must(&fuseops.CreateLinkOp{Parent: rootIno, Name: "b2", Target: id(b)})
	h.take()
	h.must(&fuseops.RenameOp{OldParent: rootIno, OldName: "a", NewParent: rootIno, NewName: "b"})
	recs := h.take()
	if recs[0].Replaced != b || recs[0].Ino != a {
		t.Fatalf("record %+v", recs[0])
	}
	if n := h.attr(b).Nlink; n != 1 {
		t.Fatalf("replaced file nlink %d", n)
	}
	if got := h.names(rootIno); !slices.Equal(got, []string{"b", "b2"}) {
		t.Fatalf("names %v", got)
	}
	// Replacing the last link frees the file once the kernel forgets it.
	h.must(&fuseops.RenameOp{OldParent: rootIno, OldName: "b", NewParent: rootIno, NewName: "b2"})
	if h.attr(b).Nlink != 0 {
		t.Fatal("nlink")
	}
	h.forget(b, 2)
	if h.live(b) {
		t.Fatal("replaced file not freed")
	}
}

func TestRenameOverKeepsReaddirPosition(t *testing.T) {
	h := newHarness(t, Config{})
	for _, n := range []string{"a", "b", "c", "d"} {
		h.mkfile(rootIno, n, "")
	}
	h.must(&fuseops.RenameOp{OldParent: rootIno, OldName: "d", NewParent: rootIno, NewName: "b"})
	if got := h.names(rootIno); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("names %v: the replaced name should keep its place", got)
	}
}

func TestRenameDirAcrossParentsFixesLinks(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.mkdir(rootIno, "a", 0o755)
	b := h.mkdir(rootIno, "b", 0o755)
	c := h.mkdir(a, "c", 0o755)
	h.must(&fuseops.RenameOp{OldParent: id(a), OldName: "c", NewParent: id(b), NewName: "c"})
	if h.attr(a).Nlink != 2 || h.attr(b).Nlink != 3 || h.attr(rootIno).Nlink != 4 {
		t.Fatalf("nlinks a %d b %d root %d", h.attr(a).Nlink, h.attr(b).Nlink, h.attr(rootIno).Nlink)
	}
	if up, _ := h.lookup(c, ".."); up != b {
		t.Fatalf(".. of moved dir is %d", up)
	}
	// Over an empty dir elsewhere: the replaced dir goes, links follow.
	e := h.mkdir(a, "e", 0o755)
	h.must(&fuseops.RenameOp{OldParent: id(b), OldName: "c", NewParent: id(a), NewName: "e"})
	if h.attr(a).Nlink != 3 || h.attr(b).Nlink != 2 || h.attr(e).Nlink != 0 {
		t.Fatalf("after rename over dir: a %d b %d e %d", h.attr(a).Nlink, h.attr(b).Nlink, h.attr(e).Nlink)
	}
}

func TestRenameAndLinkTimes(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.mkdir(rootIno, "a", 0o755)
	b := h.mkdir(rootIno, "b", 0o755)
	f := h.mkfile(a, "f", "x")
	fm := h.attr(f).Mtime
	h.must(&fuseops.RenameOp{OldParent: id(a), OldName: "f", NewParent: id(b), NewName: "g"})
	ns := h.now.UnixNano()
	for _, d := range []uint64{a, b} {
		if at := h.attr(d); at.Mtime != ns || at.Ctime != ns {
			t.Fatalf("parent %d times %+v, want %d", d, at, ns)
		}
	}
	if at := h.attr(f); at.Ctime != ns || at.Mtime != fm {
		t.Fatalf("renamed file times %+v", at)
	}
	h.must(&fuseops.CreateLinkOp{Parent: id(a), Name: "h", Target: id(f)})
	ns = h.now.UnixNano()
	if at := h.attr(f); at.Ctime != ns || at.Nlink != 2 || at.Mtime != fm {
		t.Fatalf("linked file %+v", at)
	}
	if at := h.attr(a); at.Mtime != ns || at.Ctime != ns {
		t.Fatalf("link parent %+v", at)
	}
	h.must(&fuseops.UnlinkOp{Parent: id(b), Name: "g"})
	ns = h.now.UnixNano()
	if at := h.attr(f); at.Ctime != ns || at.Nlink != 1 {
		t.Fatalf("unlinked file %+v", at)
	}
	if at := h.attr(b); at.Mtime != ns || at.Ctime != ns {
		t.Fatalf("unlink parent %+v", at)
	}
}

func TestLinkEntryAndRecord(t *testing.T) {
	h := newHarness(t, Config{})
	d := h.mkdir(rootIno, "d", 0o755)
	f := h.mkfile(rootIno, "f", "data")
	n0 := h.st.inodes[f].nlookup
	h.take()
	op := &fuseops.CreateLinkOp{Parent: id(d), Name: "g", Target: id(f)}
	w := h.must(op)
	recs := h.take()
	if len(recs) != 1 || recs[0].Op != RecLink || recs[0].Ino != f || recs[0].Parent != d ||
		recs[0].Name != "g" || recs[0].Attr.Nlink != 2 || w != recs[0].LSN {
		t.Fatalf("link record %+v, wait %d", recs, w)
	}
	if uint64(op.Entry.Child) != f || op.Entry.Attributes.Nlink != 2 || h.st.inodes[f].nlookup != n0+1 {
		t.Fatalf("link entry %+v", op.Entry)
	}
	// Linking a file whose last name is gone (open, nlink 0) is ENOENT.
	ino, fh := h.create(rootIno, "tmp")
	h.must(&fuseops.UnlinkOp{Parent: rootIno, Name: "tmp"})
	h.wantErrno(syscall.ENOENT, &fuseops.CreateLinkOp{Parent: rootIno, Name: "back", Target: id(ino)})
	h.release(fh)
}

func TestRemoveName(t *testing.T) {
	h := newHarness(t, Config{ReadOnly: true}) // a follower applies remote changes
	h.st.readOnly = false
	d := h.mkdir(rootIno, "d", 0o755)
	f := h.mkfile(d, "f", "x")
	h.must(&fuseops.CreateLinkOp{Parent: rootIno, Name: "f2", Target: id(f)})
	h.st.SetReadOnly()
	h.take()
	h.takeNotes()
	if err := h.st.RemoveName(rootIno, "d", h.now); err != syscall.ENOTEMPTY {
		t.Fatalf("remove non-empty dir: %v", err)
	}
	if err := h.st.RemoveName(d, "f", h.now); err != nil {
		t.Fatal(err)
	}
	h.st.CheckInvariants()
	h.collect() // RemoveName's record and notes are in the Effects, as a step's
	notes := h.takeNotes()
	want := []Note{
		{Kind: NoteDelete, Parent: d, Child: f, Name: "f"},
		{Kind: NoteInvalInode, Child: d, Len: -1},
		{Kind: NoteInvalInode, Child: f, Len: -1}, // still linked as /f2
	}
	if !slices.Equal(notes, want) {
		t.Fatalf("notes %+v, want %+v", notes, want)
	}
	if err := h.st.RemoveName(rootIno, "d", h.now); err != nil {
		t.Fatal(err)
	}
	h.st.CheckInvariants()
	h.collect()
	recs := h.take()
	if len(recs) != 2 || recs[0].Op != RecUnlink || recs[1].Op != RecRmdir || recs[1].Ino != d {
		t.Fatalf("records %+v", recs)
	}
	if notes := h.takeNotes(); len(notes) != 2 || notes[0].Kind != NoteDelete || notes[0].Child != d {
		t.Fatalf("notes %+v", notes)
	}
	if h.collect(); h.takeNotes() != nil {
		t.Fatal("notes taken twice")
	}
	for _, bad := range []string{"", ".", "..", "a/b", "missing"} {
		if err := h.st.RemoveName(rootIno, bad, h.now); err == nil {
			t.Fatalf("RemoveName %q succeeded", bad)
		}
	}
}
