package fsactor

import (
	"syscall"
	"testing"

	"github.com/jacobsa/fuse/fuseops"
)

func TestLookupCountsAndForget(t *testing.T) {
	h := newHarness(t, Config{})
	d := h.mkdir(rootIno, "d", 0o755) // entry: 1
	for i := 0; i < 2; i++ {
		if ino, err := h.lookup(rootIno, "d"); err != nil || ino != d {
			t.Fatalf("lookup d: %d %v", ino, err)
		}
	}
	if n := h.st.inodes[d].nlookup; n != 3 {
		t.Fatalf("nlookup %d, want 3", n)
	}
	h.forget(d, 3)
	if !h.live(d) {
		t.Fatal("a named directory went with its last lookup")
	}
	h.must(&fuseops.RmDirOp{Parent: rootIno, Name: "d"})
	if h.live(d) {
		t.Fatal("removed directory without references stayed")
	}
	// Over-forgetting clamps; forgetting a freed inode is harmless.
	h.forget(d, 5)
	f := h.mkfile(rootIno, "f", "x")
	h.forget(f, 100)
	if !h.live(f) || h.st.inodes[f].nlookup != 0 {
		t.Fatal("over-forget broke a named file")
	}
}

func TestRootIsNeverFreed(t *testing.T) {
	h := newHarness(t, Config{})
	h.forget(rootIno, 10)
	h.must(&fuseops.BatchForgetOp{Entries: []fuseops.BatchForgetEntry{{Inode: rootIno, N: 3}}})
	if !h.live(rootIno) {
		t.Fatal("root freed")
	}
}

func TestUnlinkedOpenFileLivesUntilReleaseAndForget(t *testing.T) {
	h := newHarness(t, Config{})
	ino, fh := h.create(rootIno, "f")
	h.write(ino, fh, 0, "hello")
	h.take()
	h.must(&fuseops.UnlinkOp{Parent: rootIno, Name: "f"})
	if a := h.attr(ino); a.Nlink != 0 {
		t.Fatalf("nlink after unlink %d", a.Nlink)
	}
	if _, err := h.lookup(rootIno, "f"); err != syscall.ENOENT {
		t.Fatalf("lookup after unlink: %v", err)
	}
	// Still readable and writable through the handle.
	h.write(ino, fh, 5, " world")
	if got := h.read(ino, fh, 0, 100); got != "hello world" {
		t.Fatalf("read after unlink %q", got)
	}
	recs := h.take()
	if len(recs) != 1 || recs[0].Op != RecUnlink || recs[0].Attr.Nlink != 0 {
		t.Fatalf("records %v", recs)
	}
	// An unlinked file ships nothing at flush or release.
	h.must(&fuseops.FlushFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)})
	h.release(fh)
	if recs := h.take(); len(recs) != 0 {
		t.Fatalf("unlinked file shipped %v", recs)
	}
	if h.st.used != 0 {
		t.Fatal("content kept after the last handle of an unlinked file (nobody can read it again)")
	}
	h.freedByForget(ino, 1, "the unlinked, released file")
	if h.st.used != 0 {
		t.Fatalf("memfd bytes still counted: %d", h.st.used)
	}
}

func TestForgetBeforeReleaseKeepsOpenFile(t *testing.T) {
	h := newHarness(t, Config{})
	ino, fh := h.create(rootIno, "f")
	h.must(&fuseops.UnlinkOp{Parent: rootIno, Name: "f"})
	h.must(&fuseops.BatchForgetOp{Entries: []fuseops.BatchForgetEntry{{Inode: id(ino), N: 1}}})
	if !h.live(ino) {
		t.Fatal("freed with a handle open")
	}
	h.write(ino, fh, 0, "x")
	h.release(fh)
	if h.live(ino) {
		t.Fatal("not freed after the last handle")
	}
}

func TestInodeNumbersAndHandlesNeverReused(t *testing.T) {
	h := newHarness(t, Config{})
	seenIno := map[uint64]bool{rootIno: true}
	seenFh := map[uint64]bool{}
	for i := 0; i < 20; i++ {
		ino, fh := h.create(rootIno, "f")
		if seenIno[ino] || seenFh[fh] {
			t.Fatalf("reused inode %d or handle %d", ino, fh)
		}
		seenIno[ino], seenFh[fh] = true, true
		h.release(fh)
		h.must(&fuseops.UnlinkOp{Parent: rootIno, Name: "f"})
		h.forget(ino, 1)
		if h.live(ino) {
			t.Fatal("not freed")
		}
	}
	op := &fuseops.OpenDirOp{Inode: rootIno}
	h.must(op)
	if seenFh[uint64(op.Handle)] {
		t.Fatal("dir handle reused a file handle id")
	}
	h.must(&fuseops.ReleaseDirHandleOp{Handle: op.Handle})
	h.wantErrno(syscall.EBADF, &fuseops.ReleaseDirHandleOp{Handle: op.Handle})
}

func TestGenerationIsZeroAndExpirations(t *testing.T) {
	h := newHarness(t, Config{EntryTimeout: 5e9, AttrTimeout: 7e9})
	op := &fuseops.MkDirOp{Parent: rootIno, Name: "d", Mode: 0o755}
	h.must(op)
	if op.Entry.Generation != 0 {
		t.Fatal("generation")
	}
	if got := op.Entry.EntryExpiration.Sub(h.now); got != 5e9 {
		t.Fatalf("entry expiration in %v", got)
	}
	if got := op.Entry.AttributesExpiration.Sub(h.now); got != 7e9 {
		t.Fatalf("attr expiration in %v", got)
	}
	ga := &fuseops.GetInodeAttributesOp{Inode: op.Entry.Child}
	h.must(ga)
	if got := ga.AttributesExpiration.Sub(h.now); got != 7e9 {
		t.Fatalf("getattr expiration in %v", got)
	}
}

func TestNegativeLookup(t *testing.T) {
	h := newHarness(t, Config{EntryTimeout: 30e9})
	op := &fuseops.LookUpInodeOp{Parent: rootIno, Name: "nope"}
	h.must(op)
	if op.Entry.Child != 0 || op.Entry.EntryExpiration.Sub(h.now) != 30e9 {
		t.Fatalf("negative entry %+v", op.Entry)
	}
	h0 := newHarness(t, Config{})
	h0.wantErrno(syscall.ENOENT, &fuseops.LookUpInodeOp{Parent: rootIno, Name: "nope"})
}

func TestLookupDotAndDotDot(t *testing.T) {
	h := newHarness(t, Config{})
	d := h.mkdir(rootIno, "d", 0o755)
	if ino, _ := h.lookup(d, ".."); ino != rootIno {
		t.Fatalf(".. of d is %d", ino)
	}
	if ino, _ := h.lookup(d, "."); ino != d {
		t.Fatalf(". of d is %d", ino)
	}
	if ino, _ := h.lookup(rootIno, ".."); ino != rootIno {
		t.Fatalf(".. of root is %d", ino)
	}
}
