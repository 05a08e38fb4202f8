package fsactor

import (
	"os"
	"syscall"
	"testing"

	"github.com/jacobsa/fuse/fuseops"
)

// mutation is one op of every mutating kind, against the tree of
// harness.tree, with the record it must emit.
type mutation struct {
	name string
	op   func(tr tree) any
	rec  RecordOp
	wait bool // waits for its record even without Config.Sync
}

var mutations = []mutation{
	{"mkdir", func(tr tree) any { return &fuseops.MkDirOp{Parent: rootIno, Name: "n", Mode: 0o755} }, RecCreate, false},
	{"mknod", func(tr tree) any { return &fuseops.MkNodeOp{Parent: rootIno, Name: "n", Mode: os.ModeNamedPipe} }, RecCreate, false},
	{"create", func(tr tree) any { return &fuseops.CreateFileOp{Parent: rootIno, Name: "n", Mode: 0o644} }, RecCreate, false},
	{"symlink", func(tr tree) any { return &fuseops.CreateSymlinkOp{Parent: rootIno, Name: "n", Target: "t"} }, RecCreate, false},
	{"link", func(tr tree) any { return &fuseops.CreateLinkOp{Parent: rootIno, Name: "n", Target: id(tr.f)} }, RecLink, true},
	{"rename", func(tr tree) any {
		return &fuseops.RenameOp{OldParent: rootIno, OldName: "f", NewParent: rootIno, NewName: "n"}
	}, RecRename, true},
	{"unlink", func(tr tree) any { return &fuseops.UnlinkOp{Parent: rootIno, Name: "f"} }, RecUnlink, false},
	{"rmdir", func(tr tree) any { return &fuseops.RmDirOp{Parent: rootIno, Name: "e"} }, RecRmdir, false},
	{"setattr", func(tr tree) any {
		return &fuseops.SetInodeAttributesOp{Inode: id(tr.f), Uid: ptr(uint32(3))}
	}, RecSetattr, false},
	{"setxattr", func(tr tree) any { return &fuseops.SetXattrOp{Inode: id(tr.f), Name: "user.x"} }, RecSetXattr, false},
	{"removexattr", func(tr tree) any { return &fuseops.RemoveXattrOp{Inode: id(tr.f), Name: "user.there"} }, RecRemoveXattr, false},
}

func TestRecordsAndWaits(t *testing.T) {
	for _, sync := range []bool{false, true} {
		for _, m := range mutations {
			t.Run(m.name, func(t *testing.T) {
				h := newHarness(t, Config{Sync: sync})
				tr := h.tree()
				h.must(&fuseops.SetXattrOp{Inode: id(tr.f), Name: "user.there"})
				h.take()
				w := h.must(m.op(tr))
				recs := h.take()
				if len(recs) != 1 || recs[0].Op != m.rec {
					t.Fatalf("records %+v, want one %v", recs, m.rec)
				}
				want := uint64(0)
				if sync || m.wait {
					want = recs[0].LSN
				}
				if w != want {
					t.Fatalf("sync %v: waits for %d, want %d", sync, w, want)
				}
				if recs[0].Attr.Ctime != h.now.UnixNano() {
					t.Fatalf("record attr ctime %d, now %d", recs[0].Attr.Ctime, h.now.UnixNano())
				}
			})
		}
	}
}

func TestRecordFieldsOfCreate(t *testing.T) {
	h := newHarness(t, Config{})
	h.c = Caller{Uid: 5, Gid: 6}
	op := &fuseops.MkNodeOp{Parent: rootIno, Name: "dev", Mode: os.ModeDevice | os.ModeCharDevice | 0o620, Rdev: 0x0104}
	h.must(op)
	r := h.take()[0]
	want := Record{LSN: 1, Op: RecCreate, Ino: uint64(op.Entry.Child), Parent: rootIno, Name: "dev",
		Attr: Attr{Mode: syscall.S_IFCHR | 0o620, Uid: 5, Gid: 6, Nlink: 1, Rdev: 0x0104,
			Atime: h.now.UnixNano(), Mtime: h.now.UnixNano(), Ctime: h.now.UnixNano()}}
	if r.LSN != want.LSN || r.Op != want.Op || r.Ino != want.Ino || r.Parent != want.Parent ||
		r.Name != want.Name || r.Attr != want.Attr {
		t.Fatalf("record %+v\nwant %+v", *r, want)
	}
}

func TestSyncFSWaitsForHead(t *testing.T) {
	h := newHarness(t, Config{})
	if w := h.must(&fuseops.SyncFSOp{}); w != 0 {
		t.Fatalf("empty volume waits for %d", w)
	}
	h.mkfile(rootIno, "f", "x")
	if w := h.must(&fuseops.SyncFSOp{}); w != h.st.lsn || w == 0 {
		t.Fatalf("syncfs waits for %d, head %d", w, h.st.lsn)
	}
}

func TestReadOnly(t *testing.T) {
	for _, how := range []string{"fenced", "config"} {
		t.Run(how, func(t *testing.T) {
			h := newHarness(t, Config{})
			tr := h.tree()
			h.must(&fuseops.SetXattrOp{Inode: id(tr.f), Name: "user.there"})
			ino, fh := h.create(rootIno, "open")
			h.write(ino, fh, 0, "dirty")
			if how == "fenced" {
				h.st.SetReadOnly()
			} else {
				h.st.readOnly = true // as NewState with Config.ReadOnly
			}
			h.take()
			for _, m := range mutations {
				if e := h.errno(m.op(tr)); e != syscall.EROFS {
					t.Errorf("%s: %v, want EROFS", m.name, e)
				}
			}
			ro := []any{
				&fuseops.WriteFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh), Data: []byte("x")},
				&fuseops.FallocateOp{Inode: id(ino), Handle: fuseops.HandleID(fh), Length: 10},
				&fuseops.OpenFileOp{Inode: id(tr.f), OpenFlags: syscall.O_WRONLY},
				&fuseops.OpenFileOp{Inode: id(tr.f), OpenFlags: syscall.O_RDONLY | syscall.O_TRUNC},
			}
			for _, op := range ro {
				h.wantErrno(syscall.EROFS, op)
			}
			// A dirty file cannot be made durable any more.
			h.wantErrno(syscall.EIO, &fuseops.FlushFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)})
			// Reads work.
			if got := h.read(ino, fh, 0, 10); got != "dirty" {
				t.Fatalf("read %q", got)
			}
			rd := h.open(tr.f, syscall.O_RDONLY)
			if got := h.read(tr.f, rd, 0, 10); got != "top" {
				t.Fatalf("read %q", got)
			}
			h.readdir(rootIno, 0, 4096, true)
			h.lookup(rootIno, "f")
			h.release(rd)
			h.release(fh)
			if recs := h.take(); len(recs) != 0 {
				t.Fatalf("read-only volume emitted %+v", recs)
			}
		})
	}
	h := newHarness(t, Config{ReadOnly: true})
	h.wantErrno(syscall.EROFS, &fuseops.MkDirOp{Parent: rootIno, Name: "x"})
}

// TestOutOfVolumeInodesEmitNothing: once the last name of an inode is gone
// its unlink (or rmdir) record deleted it on the replicas, so changes made
// through open handles or kernel references emit no record a replica
// would reject.
func TestOutOfVolumeInodesEmitNothing(t *testing.T) {
	h := newHarness(t, Config{Sync: true})
	ino, fh := h.create(rootIno, "f")
	h.must(&fuseops.SetXattrOp{Inode: id(ino), Name: "user.a"})
	d := h.mkdir(rootIno, "d", 0o755)
	h.must(&fuseops.UnlinkOp{Parent: rootIno, Name: "f"})
	h.must(&fuseops.RmDirOp{Parent: rootIno, Name: "d"})
	h.take()
	mode := os.FileMode(0o600)
	ops := []any{
		&fuseops.SetInodeAttributesOp{Inode: id(ino), Mode: &mode},
		&fuseops.SetInodeAttributesOp{Inode: id(ino), Size: ptr(uint64(10)), Handle: ptr(fuseops.HandleID(fh))},
		&fuseops.SetXattrOp{Inode: id(ino), Name: "user.b", Value: []byte("v")},
		&fuseops.RemoveXattrOp{Inode: id(ino), Name: "user.a"},
		&fuseops.WriteFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh), Data: []byte("x")},
		&fuseops.OpenFileOp{Inode: id(ino), OpenFlags: syscall.O_RDWR | syscall.O_TRUNC},
		&fuseops.FlushFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)},
		&fuseops.SetInodeAttributesOp{Inode: id(d), Mode: &mode},
		&fuseops.SetXattrOp{Inode: id(d), Name: "user.d"},
	}
	for _, op := range ops {
		h.must(op)
	}
	h.release(fh)
	if recs := h.take(); len(recs) != 0 {
		t.Fatalf("records for inodes outside the volume: %+v", recs)
	}
	if a := h.attr(ino); a.Mode != syscall.S_IFREG|0o600 || a.Size != 0 {
		t.Fatalf("changes not applied in memory: %+v", a)
	}
}
