package fsactor

import (
	"syscall"
	"testing"
	"time"

	"github.com/jacobsa/fuse/fuseops"
)

// The hot path allocates nothing: lookups, attributes, reads, writes into
// an existing memfd, readdir, flush of a clean file, open and release.
func TestHotPathDoesNotAllocate(t *testing.T) {
	h := newHarness(t, Config{EntryTimeout: time.Second, AttrTimeout: time.Second})
	d := h.mkdir(rootIno, "d", 0o755)
	ino, fh := h.create(d, "f")
	h.write(ino, fh, 0, "0123456789")
	h.must(&fuseops.FlushFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)})
	buf := make([]byte, 4096)
	data := []byte("abcd")
	lookup := &fuseops.LookUpInodeOp{Parent: id(d), Name: "f"}
	miss := &fuseops.LookUpInodeOp{Parent: id(d), Name: "nope"}
	getattr := &fuseops.GetInodeAttributesOp{Inode: id(ino)}
	read := &fuseops.ReadFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh), Size: 10, Dst: buf[:10]}
	write := &fuseops.WriteFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh), Offset: 2, Data: data}
	readdir := &fuseops.ReadDirOp{Inode: id(d), Dst: buf}
	readdirplus := &fuseops.ReadDirPlusOp{ReadDirOp: fuseops.ReadDirOp{Inode: id(d), Dst: buf}}
	statfs := &fuseops.StatFSOp{}
	forget := &fuseops.ForgetInodeOp{Inode: id(ino), N: 1}
	getx := &fuseops.GetXattrOp{Inode: id(ino), Name: "user.none"}
	cases := map[string][]any{
		"lookup":      {lookup, forget},
		"lookup miss": {miss},
		"getattr":     {getattr},
		"read":        {read},
		"write":       {write},
		"readdir":     {readdir},
		"readdirplus": {readdirplus, forget},
		"statfs":      {statfs},
		"getxattr":    {getx},
	}
	now := t0
	for name, ops := range cases {
		allocs := testing.AllocsPerRun(100, func() {
			for _, op := range ops {
				now = now.Add(time.Millisecond)
				eff := h.st.Handle(op, h.c, now)
				if eff.Err != 0 && eff.Err != syscall.ENODATA {
					t.Fatalf("%s: %v", name, eff.Err)
				}
				eff.Reset()
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %.1f allocations per op", name, allocs)
		}
	}
	h.st.CheckInvariants()
}

// BenchmarkSpoolMessage runs the state's part of one spool message: create,
// write, flush, release, rename, lookup, unlink, forget.
func BenchmarkSpoolMessage(b *testing.B) {
	st, err := NewState(Config{EntryTimeout: time.Second, DiscardContent: true}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	c, now := Caller{}, t0
	data := make([]byte, 4096)
	dst := make([]byte, 4096)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		cr := &fuseops.CreateFileOp{Parent: rootIno, Name: "msg.tmp", Mode: 0o600}
		st.Handle(cr, c, now)
		ino, fh := cr.Entry.Child, cr.Handle
		for off := int64(0); off < 16384; off += 4096 {
			st.Handle(&fuseops.WriteFileOp{Inode: ino, Handle: fh, Offset: off, Data: data}, c, now)
		}
		st.Handle(&fuseops.SyncFileOp{Inode: ino, Handle: fh}, c, now)
		st.Handle(&fuseops.FlushFileOp{Inode: ino, Handle: fh}, c, now)
		st.Handle(&fuseops.ReleaseFileHandleOp{Handle: fh}, c, now)
		st.Handle(&fuseops.RenameOp{OldParent: rootIno, OldName: "msg.tmp", NewParent: rootIno, NewName: "msg"}, c, now)
		op := &fuseops.OpenFileOp{Inode: ino}
		st.Handle(op, c, now)
		st.Handle(&fuseops.ReadFileOp{Inode: ino, Handle: op.Handle, Size: 4096, Dst: dst}, c, now)
		st.Handle(&fuseops.ReleaseFileHandleOp{Handle: op.Handle}, c, now)
		st.Handle(&fuseops.UnlinkOp{Parent: rootIno, Name: "msg"}, c, now)
		st.Handle(&fuseops.ForgetInodeOp{Inode: ino, N: 1}, c, now).Reset()
	}
}

// BenchmarkGetattr is the cheapest op: the state's share of a stat.
func BenchmarkGetattr(b *testing.B) {
	st, _ := NewState(Config{AttrTimeout: time.Second, DiscardContent: true}, nil)
	defer st.Close()
	op := &fuseops.GetInodeAttributesOp{Inode: rootIno}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		st.Handle(op, Caller{}, t0)
	}
}
