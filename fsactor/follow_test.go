package fsactor

import (
	"errors"
	"os"
	"reflect"
	"syscall"
	"testing"

	"github.com/jacobsa/fuse/fuseops"
)

// newFollowerHarness builds a follower state from snap (nil: a new volume
// whose root matches a new harness's: same config, same clock is not
// needed, the snapshot says it).
func newFollowerHarness(t *testing.T, snap *Snapshot) *harness {
	t.Helper()
	st, err := NewState(Config{Follower: true, DisableWritebackCache: true, EntryTimeout: 60e9, AttrTimeout: 60e9}, snap)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	st.CheckInvariants()
	return &harness{t: t, st: st, next: 1, now: t0, c: Caller{Uid: 1000, Gid: 1000, Pid: 42}}
}

// newFollowing builds a primary (newHarness with the default Config) and
// a follower of it, the follower from the primary's starting snapshot: the
// pair the follow and resync tests start from.
func newFollowing(t *testing.T) (p, f *harness) {
	t.Helper()
	p = newHarness(t, Config{})
	start, err := p.st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return p, newFollowerHarness(t, start)
}

// follow applies recs (read as a sink reads them) to the follower f,
// checks its invariants, and returns the notes produced.
func follow(t *testing.T, f *harness, recs []*Record) []Note {
	t.Helper()
	batch := make([]Record, len(recs))
	for i, r := range recs {
		batch[i] = *r
	}
	if err := f.st.ApplyRecords(batch); err != nil {
		t.Fatalf("ApplyRecords: %v", err)
	}
	f.st.CheckInvariants()
	eff := f.st.Effects()
	if len(eff.Records) > 0 {
		t.Fatalf("a follower emitted %d records", len(eff.Records))
	}
	notes := append([]Note(nil), eff.Notes...)
	eff.Reset()
	return notes
}

// sameVolume fails unless the two states hold the same volume: inode
// numbers, attributes, names in order, xattrs, targets and contents.
func sameVolume(t *testing.T, want, got *State) {
	t.Helper()
	ws, err := want.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	gs, err := got.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if ws.LSN != gs.LSN || ws.NextIno != gs.NextIno || len(ws.Inodes) != len(gs.Inodes) {
		t.Fatalf("lsn %d/%d, next inode %d/%d, %d/%d inodes", gs.LSN, ws.LSN, gs.NextIno, ws.NextIno, len(gs.Inodes), len(ws.Inodes))
	}
	for i := range ws.Inodes {
		if !reflect.DeepEqual(ws.Inodes[i], gs.Inodes[i]) {
			t.Fatalf("inode %d differs:\nprimary  %+v\nfollower %+v", ws.Inodes[i].Ino, ws.Inodes[i], gs.Inodes[i])
		}
	}
}

// everyOp runs a workload with every kind of record on the primary p.
func everyOp(p *harness) {
	t := p.t
	t.Helper()
	q := p.mkdir(rootIno, "q", 0o755)
	sub := p.mkdir(q, "sub", 0o700)
	f := p.mkfile(q, "df1", "message one")
	g := p.mkfile(q, "df2", "to be replaced")
	ino, fh := p.create(q, "sparse")
	p.write(ino, fh, 1<<20, "after a hole")
	p.must(&fuseops.FlushFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)})
	p.release(fh)
	p.must(&fuseops.CreateSymlinkOp{Parent: id(q), Name: "ln", Target: "df1"})
	p.must(&fuseops.MkNodeOp{Parent: id(q), Name: "fifo", Mode: os.ModeNamedPipe | 0o600})
	p.must(&fuseops.MkNodeOp{Parent: id(q), Name: "null", Mode: os.ModeDevice | os.ModeCharDevice | 0o666, Rdev: 0x103})
	p.must(&fuseops.CreateLinkOp{Parent: id(sub), Name: "hard", Target: id(f)})
	p.must(&fuseops.SetXattrOp{Inode: id(f), Name: "user.a", Value: []byte("1")})
	p.must(&fuseops.SetXattrOp{Inode: id(f), Name: "user.b", Value: []byte("2")})
	p.must(&fuseops.RemoveXattrOp{Inode: id(f), Name: "user.a"})
	mode := os.FileMode(0o600)
	size := uint64(5)
	p.must(&fuseops.SetInodeAttributesOp{Inode: id(f), Mode: &mode})
	p.must(&fuseops.SetInodeAttributesOp{Inode: id(ino), Size: &size})
	big := uint64(3 << 20)
	p.must(&fuseops.SetInodeAttributesOp{Inode: id(g), Size: &big})
	p.must(&fuseops.RenameOp{OldParent: id(q), OldName: "df1", NewParent: id(q), NewName: "df2"}) // replaces g
	p.must(&fuseops.RenameOp{OldParent: id(q), OldName: "sub", NewParent: id(rootIno), NewName: "moved"})
	p.must(&fuseops.UnlinkOp{Parent: id(sub), Name: "hard"})
	e := p.mkdir(rootIno, "empty", 0o755)
	p.mkdir(rootIno, "victim", 0o755)
	p.must(&fuseops.RenameOp{OldParent: id(rootIno), OldName: "empty", NewParent: id(rootIno), NewName: "victim"})
	p.must(&fuseops.RmDirOp{Parent: id(rootIno), Name: "moved"})
	p.must(&fuseops.UnlinkOp{Parent: id(q), Name: "fifo"})
	_ = e
}

// TestFollowEveryOp: the records of a workload with every op, applied to a
// follower built from the primary's starting snapshot, give the same
// volume: inode numbers, names in order, attributes, xattrs, contents.
func TestFollowEveryOp(t *testing.T) {
	p, f := newFollowing(t)
	everyOp(p)
	recs := p.take()
	ops := map[RecordOp]bool{}
	for _, r := range recs {
		ops[r.Op] = true
	}
	if len(ops) != int(RecData) {
		t.Fatalf("the workload emits %d kinds of record, want %d: %v", len(ops), RecData, ops)
	}
	follow(t, f, recs[:7])
	follow(t, f, recs[7:])
	sameVolume(t, p.st, f.st)
	if f.st.AppliedLSN() != p.st.lsn {
		t.Fatalf("AppliedLSN %d, want %d", f.st.AppliedLSN(), p.st.lsn)
	}
}

// TestFollowerReadOnly: every mutation answers EROFS on a follower; reads
// work; a close waits for nothing.
func TestFollowerReadOnly(t *testing.T) {
	p, f := newFollowing(t)
	ino := p.mkfile(rootIno, "m", "data")
	follow(t, f, p.take())
	mode := os.FileMode(0o600)
	for _, op := range []any{
		&fuseops.MkDirOp{Parent: 1, Name: "d", Mode: os.ModeDir | 0o755},
		&fuseops.CreateFileOp{Parent: 1, Name: "f", Mode: 0o644},
		&fuseops.MkNodeOp{Parent: 1, Name: "n", Mode: os.ModeNamedPipe},
		&fuseops.CreateSymlinkOp{Parent: 1, Name: "s", Target: "m"},
		&fuseops.CreateLinkOp{Parent: 1, Name: "l", Target: id(ino)},
		&fuseops.UnlinkOp{Parent: 1, Name: "m"},
		&fuseops.RmDirOp{Parent: 1, Name: "m"},
		&fuseops.RenameOp{OldParent: 1, OldName: "m", NewParent: 1, NewName: "x"},
		&fuseops.SetInodeAttributesOp{Inode: id(ino), Mode: &mode},
		&fuseops.SetXattrOp{Inode: id(ino), Name: "user.x", Value: []byte("v")},
		&fuseops.RemoveXattrOp{Inode: id(ino), Name: "user.x"},
		&fuseops.WriteFileOp{Inode: id(ino), Data: []byte("x")},
		&fuseops.FallocateOp{Inode: id(ino), Length: 10},
		openOp(ino, syscall.O_WRONLY),
	} {
		f.wantErrno(syscall.EROFS, op)
	}
	if err := f.st.RemoveName(1, "m", f.now); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("RemoveName on a follower: %v", err)
	}
	fh := f.open(ino, syscall.O_RDONLY)
	if got := f.read(ino, fh, 0, 10); got != "data" {
		t.Fatalf("read %q", got)
	}
	if w := f.must(&fuseops.FlushFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)}); w != 0 {
		t.Fatalf("a follower's flush waits for lsn %d", w)
	}
	f.release(fh)
	if len(f.takeRaw()) != 0 {
		t.Fatal("a follower emitted records")
	}
}

// TestFollowOrderAndBadRecords: a batch that does not continue the LSN
// applies nothing; a bad record stops the batch after the good ones.
func TestFollowOrderAndBadRecords(t *testing.T) {
	p, f := newFollowing(t)
	p.mkdir(rootIno, "a", 0o755)
	p.mkdir(rootIno, "b", 0o755)
	recs := p.take()
	for _, batch := range [][]*Record{recs[1:], {recs[0], recs[0]}} {
		rs := make([]Record, len(batch))
		for i, r := range batch {
			rs[i] = *r
		}
		if err := f.st.ApplyRecords(rs); !errors.Is(err, ErrOutOfOrder) {
			t.Fatalf("out of order: %v", err)
		}
		if f.st.lsn != 0 || len(f.st.inodes) != 1 {
			t.Fatal("an out-of-order batch changed the state")
		}
	}
	bad := []Record{*recs[0],
		{LSN: 2, Op: RecUnlink, Ino: 99, Parent: 1, Name: "nope"},
		*recs[1]}
	bad[2].LSN = 3
	err := f.st.ApplyRecords(bad)
	if !errors.Is(err, ErrBadRecord) {
		t.Fatalf("bad record: %v", err)
	}
	f.st.CheckInvariants()
	if f.st.lsn != 1 || len(f.st.inodes) != 2 {
		t.Fatalf("after a bad record: lsn %d, %d inodes", f.st.lsn, len(f.st.inodes))
	}
	for _, r := range []Record{
		{LSN: 2, Op: RecCreate, Ino: 5, Parent: 1, Name: "x/y", Attr: Attr{Mode: syscall.S_IFREG}},
		{LSN: 2, Op: RecCreate, Ino: 2, Parent: 1, Name: "dup", Attr: Attr{Mode: syscall.S_IFREG}},
		{LSN: 2, Op: RecCreate, Ino: 9, Parent: 1, Name: "a", Attr: Attr{Mode: syscall.S_IFREG}},
		{LSN: 2, Op: RecCreate, Ino: 9, Parent: 1, Name: "nomode"},
		{LSN: 2, Op: RecSetattr, Ino: 2, Attr: Attr{Mode: syscall.S_IFREG}},
		{LSN: 2, Op: RecData, Ino: 2, Attr: Attr{Mode: syscall.S_IFDIR}},
		{LSN: 2, Op: RecRmdir, Ino: 1, Parent: 1, Name: "a"},
		{LSN: 2, Op: RecRemoveXattr, Ino: 2, XattrName: "user.none"},
	} {
		if err := f.st.ApplyRecords([]Record{r}); !errors.Is(err, ErrBadRecord) {
			t.Fatalf("%+v: %v", r, err)
		}
		f.st.CheckInvariants()
	}
}

// TestFollowNotes: the notes a remote change gives the kernel, for names
// and inodes the kernel holds (looked up), none for what it never saw.
func TestFollowNotes(t *testing.T) {
	p, f := newFollowing(t)
	q := p.mkdir(rootIno, "q", 0o755)
	a := p.mkfile(q, "a", "x")
	b := p.mkfile(q, "b", "y")
	follow(t, f, p.take())
	// The kernel knows q and a, not b.
	if _, err := f.lookup(rootIno, "q"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.lookup(q, "a"); err != nil {
		t.Fatal(err)
	}
	del := func(parent, child uint64, name string) Note {
		return Note{Kind: NoteDelete, Parent: parent, Child: child, Name: name}
	}
	inval := func(ino uint64) Note { return Note{Kind: NoteInvalInode, Child: ino, Len: -1} }
	attrs := func(ino uint64) Note { return Note{Kind: NoteInvalInode, Child: ino, Off: -1} }
	entry := func(parent uint64, name string) Note { return Note{Kind: NoteInvalEntry, Parent: parent, Name: name} }
	steps := []struct {
		what string
		op   func()
		want []Note
	}{
		{"unlink a", func() { p.must(&fuseops.UnlinkOp{Parent: id(q), Name: "a"}) }, []Note{del(q, a, "a"), inval(q)}},
		{"create c", func() { p.mkdir(q, "c", 0o755) }, []Note{entry(q, "c"), inval(q)}},
		{"data of b (unknown)", func() {
			fh := p.open(b, syscall.O_WRONLY)
			p.write(b, fh, 0, "zz")
			p.release(fh)
		}, nil},
		{"rename b over nothing", func() {
			p.must(&fuseops.RenameOp{OldParent: id(q), OldName: "b", NewParent: id(rootIno), NewName: "b2"})
		}, []Note{del(q, b, "b"), inval(q), entry(rootIno, "b2"), inval(rootIno)}},
		{"rename dir c", func() {
			p.must(&fuseops.RenameOp{OldParent: id(q), OldName: "c", NewParent: id(q), NewName: "c2"})
		}, []Note{entry(q, "c"), inval(q), entry(q, "c2")}},
	}
	for _, s := range steps {
		s.op()
		got := follow(t, f, p.take())
		if !reflect.DeepEqual(got, s.want) {
			t.Fatalf("%s: notes\n%+v, want\n%+v", s.what, got, s.want)
		}
	}
	_ = attrs
	// a was looked up and unlinked: the kernel's reference keeps it until FORGET.
	f.freedByForget(a, 1, "the unlinked inode")
}

func openOp(ino uint64, flags int) *fuseops.OpenFileOp {
	op := &fuseops.OpenFileOp{Inode: id(ino)}
	setFlags(&op.OpenFlags, flags)
	return op
}
