package fsactor

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/jacobsa/fuse/fuseops"
	"github.com/jacobsa/fuse/fuseutil"
)

// tree builds /d (dir), /d/f, /f, /l -> f, /e (empty dir), /p (fifo) and a
// removed directory /gone that the kernel still holds.
type tree struct{ d, df, f, l, e, p, gone uint64 }

func (h *harness) tree() tree {
	h.t.Helper()
	var tr tree
	tr.d = h.mkdir(rootIno, "d", 0o755)
	tr.df = h.mkfile(tr.d, "f", "in d")
	tr.f = h.mkfile(rootIno, "f", "top")
	sl := &fuseops.CreateSymlinkOp{Parent: rootIno, Name: "l", Target: "f"}
	h.must(sl)
	tr.l = uint64(sl.Entry.Child)
	tr.e = h.mkdir(rootIno, "e", 0o755)
	mk := &fuseops.MkNodeOp{Parent: rootIno, Name: "p", Mode: os.ModeNamedPipe | 0o600}
	h.must(mk)
	tr.p = uint64(mk.Entry.Child)
	tr.gone = h.mkdir(rootIno, "gone", 0o755)
	h.must(&fuseops.RmDirOp{Parent: rootIno, Name: "gone"})
	return tr
}

func TestErrnos(t *testing.T) {
	long, max := strings.Repeat("x", 256), strings.Repeat("x", 255)
	h := newHarness(t, Config{})
	tr := h.tree()
	cases := []struct {
		name string
		op   any
		want syscall.Errno
	}{
		{"lookup in a file", &fuseops.LookUpInodeOp{Parent: id(tr.f), Name: "x"}, syscall.ENOTDIR},
		{"lookup in a missing dir", &fuseops.LookUpInodeOp{Parent: 999, Name: "x"}, syscall.ENOENT},
		{"lookup missing", &fuseops.LookUpInodeOp{Parent: rootIno, Name: "x"}, syscall.ENOENT},
		{"lookup long name", &fuseops.LookUpInodeOp{Parent: rootIno, Name: long}, syscall.ENAMETOOLONG},
		{"mkdir existing", &fuseops.MkDirOp{Parent: rootIno, Name: "f", Mode: 0o755}, syscall.EEXIST},
		{"mkdir long name", &fuseops.MkDirOp{Parent: rootIno, Name: long, Mode: 0o755}, syscall.ENAMETOOLONG},
		{"mkdir in a file", &fuseops.MkDirOp{Parent: id(tr.f), Name: "x", Mode: 0o755}, syscall.ENOTDIR},
		{"mkdir in a missing dir", &fuseops.MkDirOp{Parent: 999, Name: "x", Mode: 0o755}, syscall.ENOENT},
		{"mkdir in a removed dir", &fuseops.MkDirOp{Parent: id(tr.gone), Name: "x", Mode: 0o755}, syscall.ENOENT},
		{"mkdir with a slash", &fuseops.MkDirOp{Parent: rootIno, Name: "a/b", Mode: 0o755}, syscall.EINVAL},
		{"create existing", &fuseops.CreateFileOp{Parent: rootIno, Name: "d", Mode: 0o644}, syscall.EEXIST},
		{"create long name", &fuseops.CreateFileOp{Parent: rootIno, Name: long, Mode: 0o644}, syscall.ENAMETOOLONG},
		{"mknod existing", &fuseops.MkNodeOp{Parent: rootIno, Name: "p", Mode: os.ModeNamedPipe}, syscall.EEXIST},
		{"mknod a directory", &fuseops.MkNodeOp{Parent: rootIno, Name: "x", Mode: os.ModeDir}, syscall.EINVAL},
		{"symlink existing", &fuseops.CreateSymlinkOp{Parent: rootIno, Name: "l", Target: "x"}, syscall.EEXIST},
		{"symlink empty target", &fuseops.CreateSymlinkOp{Parent: rootIno, Name: "x", Target: ""}, syscall.ENOENT},
		{"unlink missing", &fuseops.UnlinkOp{Parent: rootIno, Name: "x"}, syscall.ENOENT},
		{"unlink a dir", &fuseops.UnlinkOp{Parent: rootIno, Name: "d"}, syscall.EISDIR},
		{"unlink long name", &fuseops.UnlinkOp{Parent: rootIno, Name: long}, syscall.ENAMETOOLONG},
		{"unlink in a file", &fuseops.UnlinkOp{Parent: id(tr.f), Name: "x"}, syscall.ENOTDIR},
		{"rmdir a file", &fuseops.RmDirOp{Parent: rootIno, Name: "f"}, syscall.ENOTDIR},
		{"rmdir non-empty", &fuseops.RmDirOp{Parent: rootIno, Name: "d"}, syscall.ENOTEMPTY},
		{"rmdir missing", &fuseops.RmDirOp{Parent: rootIno, Name: "x"}, syscall.ENOENT},
		{"rmdir .", &fuseops.RmDirOp{Parent: id(tr.d), Name: "."}, syscall.EINVAL},
		{"rmdir ..", &fuseops.RmDirOp{Parent: id(tr.d), Name: ".."}, syscall.ENOTEMPTY},
		{"link a dir", &fuseops.CreateLinkOp{Parent: rootIno, Name: "x", Target: id(tr.d)}, syscall.EPERM},
		{"link onto existing", &fuseops.CreateLinkOp{Parent: rootIno, Name: "d", Target: id(tr.f)}, syscall.EEXIST},
		{"link missing target", &fuseops.CreateLinkOp{Parent: rootIno, Name: "x", Target: 999}, syscall.ENOENT},
		{"link into a file", &fuseops.CreateLinkOp{Parent: id(tr.f), Name: "x", Target: id(tr.f)}, syscall.ENOTDIR},
		{"link long name", &fuseops.CreateLinkOp{Parent: rootIno, Name: long, Target: id(tr.f)}, syscall.ENAMETOOLONG},
		{"readlink a file", &fuseops.ReadSymlinkOp{Inode: id(tr.f)}, syscall.EINVAL},
		{"open a dir", &fuseops.OpenFileOp{Inode: id(tr.d)}, syscall.EISDIR},
		{"open missing", &fuseops.OpenFileOp{Inode: 999}, syscall.ENOENT},
		{"opendir a file", &fuseops.OpenDirOp{Inode: id(tr.f)}, syscall.ENOTDIR},
		{"readdir a file", &fuseops.ReadDirOp{Inode: id(tr.f), Dst: make([]byte, 512)}, syscall.ENOTDIR},
		{"readdir a removed dir", &fuseops.ReadDirOp{Inode: id(tr.gone), Dst: make([]byte, 512)}, syscall.ENOENT},
		{"read a dir", &fuseops.ReadFileOp{Inode: id(tr.d), Dst: make([]byte, 8)}, syscall.EISDIR},
		{"read a fifo", &fuseops.ReadFileOp{Inode: id(tr.p), Dst: make([]byte, 8)}, syscall.EINVAL},
		{"write a dir", &fuseops.WriteFileOp{Inode: id(tr.d), Data: []byte("x")}, syscall.EISDIR},
		{"write negative offset", &fuseops.WriteFileOp{Inode: id(tr.f), Offset: -1, Data: []byte("x")}, syscall.EINVAL},
		{"truncate a dir", &fuseops.SetInodeAttributesOp{Inode: id(tr.d), Size: ptr(uint64(0))}, syscall.EISDIR},
		{"truncate a symlink", &fuseops.SetInodeAttributesOp{Inode: id(tr.l), Size: ptr(uint64(0))}, syscall.EINVAL},
		{"getattr missing", &fuseops.GetInodeAttributesOp{Inode: 999}, syscall.ENOENT},
		{"setattr missing", &fuseops.SetInodeAttributesOp{Inode: 999}, syscall.ENOENT},
		{"release unknown", &fuseops.ReleaseFileHandleOp{Handle: 999}, syscall.EBADF},
		{"flush missing", &fuseops.FlushFileOp{Inode: 999}, syscall.ENOENT},
		{"fallocate a dir", &fuseops.FallocateOp{Inode: id(tr.d), Length: 1}, syscall.EISDIR},
		{"getxattr missing inode", &fuseops.GetXattrOp{Inode: 999, Name: "user.x"}, syscall.ENOENT},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h.t = t
			before := len(h.recs)
			h.wantErrno(c.want, c.op)
			if len(h.recs) != before {
				t.Fatalf("a failed op emitted %v", h.recs[before:])
			}
		})
	}
	h.t = t
	// The longest name is fine.
	h.mkdir(rootIno, max, 0o755)
	h.mkfile(tr.d, max, "")
}

func ptr[T any](v T) *T { return &v }

func TestMkNodeKinds(t *testing.T) {
	h := newHarness(t, Config{})
	cases := []struct {
		mode os.FileMode
		rdev uint32
		want uint32
	}{
		{os.ModeNamedPipe | 0o640, 0, syscall.S_IFIFO | 0o640},
		{os.ModeDevice | os.ModeCharDevice | 0o600, 0x0501, syscall.S_IFCHR | 0o600},
		{os.ModeDevice | 0o600, 0x0802, syscall.S_IFBLK | 0o600},
		{os.ModeSocket | 0o700, 0, syscall.S_IFSOCK | 0o700},
		{0o644, 0, syscall.S_IFREG | 0o644},
	}
	for i, c := range cases {
		op := &fuseops.MkNodeOp{Parent: rootIno, Name: fmt.Sprint("n", i), Mode: c.mode, Rdev: c.rdev}
		h.must(op)
		a := h.attr(uint64(op.Entry.Child))
		if a.Mode != c.want || a.Rdev != c.rdev || a.Nlink != 1 || a.Size != 0 {
			t.Errorf("mknod %v: attr %+v", c.mode, a)
		}
		if op.Entry.Attributes.Mode != c.mode {
			t.Errorf("mknod %v: entry mode %v", c.mode, op.Entry.Attributes.Mode)
		}
	}
}

func TestSymlink(t *testing.T) {
	h := newHarness(t, Config{})
	op := &fuseops.CreateSymlinkOp{Parent: rootIno, Name: "l", Target: "../some/where"}
	h.must(op)
	rl := &fuseops.ReadSymlinkOp{Inode: op.Entry.Child}
	h.must(rl)
	a := h.attr(uint64(op.Entry.Child))
	if rl.Target != "../some/where" || a.Size != 13 || a.Mode != syscall.S_IFLNK|0o777 {
		t.Fatalf("readlink %q attr %+v", rl.Target, a)
	}
	recs := h.take()
	if r := recs[len(recs)-1]; r.Op != RecCreate || r.Target != "../some/where" {
		t.Fatalf("record %+v", r)
	}
}

func TestReadDirDotsAndTypes(t *testing.T) {
	h := newHarness(t, Config{})
	tr := h.tree()
	ents := h.readdir(tr.d, 0, 4096, false)
	want := []dirEntry{
		{ino: tr.d, off: 1, typ: uint32(fuseutil.DT_Directory), name: "."},
		{ino: rootIno, off: 2, typ: uint32(fuseutil.DT_Directory), name: ".."},
		{ino: tr.df, off: 3, typ: uint32(fuseutil.DT_File), name: "f"},
	}
	if fmt.Sprint(ents) != fmt.Sprint(want) {
		t.Fatalf("readdir d: %v, want %v", ents, want)
	}
	got := map[string]uint32{}
	for _, e := range h.readdir(rootIno, 0, 4096, false) {
		got[e.name] = e.typ
	}
	if got["l"] != uint32(fuseutil.DT_Link) || got["p"] != uint32(fuseutil.DT_FIFO) || got["e"] != uint32(fuseutil.DT_Directory) {
		t.Fatalf("types %v", got)
	}
	if _, ok := got["gone"]; ok {
		t.Fatal("removed dir listed")
	}
	// A buffer too small for even "." returns nothing, and resuming works.
	if ents := h.readdir(tr.d, 0, 16, false); len(ents) != 0 {
		t.Fatalf("tiny buffer gave %v", ents)
	}
	if ents := h.readdir(tr.d, 2, 4096, false); len(ents) != 1 || ents[0].name != "f" {
		t.Fatalf("from offset 2: %v", ents)
	}
	if ents := h.readdir(tr.d, 3, 4096, false); len(ents) != 0 {
		t.Fatalf("past the end: %v", ents)
	}
}

func TestReadDirPlusCountsLookups(t *testing.T) {
	h := newHarness(t, Config{EntryTimeout: 1e9, AttrTimeout: 1e9})
	d := h.mkdir(rootIno, "d", 0o755)
	a := h.mkfile(d, "a", "12345")
	b := h.mkdir(d, "b", 0o700)
	before := map[uint64]uint64{d: h.st.inodes[d].nlookup, a: h.st.inodes[a].nlookup, b: h.st.inodes[b].nlookup, rootIno: h.st.inodes[rootIno].nlookup}
	ents := h.readdir(d, 0, 4096, true)
	if len(ents) != 4 {
		t.Fatalf("entries %v", ents)
	}
	for _, e := range ents {
		if e.nodeid != e.ino {
			t.Fatalf("entry %q: nodeid %d, ino %d", e.name, e.nodeid, e.ino)
		}
	}
	want := map[uint64]uint64{d: before[d], rootIno: before[rootIno], a: before[a] + 1, b: before[b] + 1}
	for ino, n := range want {
		if got := h.st.inodes[ino].nlookup; got != n {
			t.Errorf("inode %d nlookup %d, want %d", ino, got, n)
		}
	}
	// An entry that does not fit is not counted.
	h.mkfile(d, strings.Repeat("n", 200), "")
	big := h.readdir(d, 2, entryOutSize+24+8, true) // room for "a" only
	if len(big) != 1 || big[0].name != "a" || h.st.inodes[b].nlookup != before[b]+1 ||
		h.st.inodes[a].nlookup != before[a]+2 {
		t.Fatalf("partial readdirplus %v, b nlookup %d", big, h.st.inodes[b].nlookup)
	}
}

// TestReadDirStableUnderMutation reads a directory one small buffer at a
// time while names are added and removed around the reader's position:
// every name present throughout is returned exactly once, no name twice.
func TestReadDirStableUnderMutation(t *testing.T) {
	for _, plus := range []bool{false, true} {
		t.Run(fmt.Sprint("plus=", plus), func(t *testing.T) {
			h := newHarness(t, Config{})
			d := h.mkdir(rootIno, "d", 0o755)
			for i := 0; i < 200; i++ {
				h.mkfile(d, fmt.Sprintf("keep%03d", i), "")
				h.mkfile(d, fmt.Sprintf("tmp%03d", i), "")
			}
			od := &fuseops.OpenDirOp{Inode: id(d)}
			h.must(od)
			seen := map[string]int{}
			var off uint64
			removed, added := 0, 0
			for round := 0; ; round++ {
				ents := h.readdir(d, off, 300, plus) // a few entries per call
				if len(ents) == 0 {
					break
				}
				for _, e := range ents {
					seen[e.name]++
					off = e.off
				}
				if round >= 60 {
					continue // let the reader reach the end
				}
				// Remove names behind and ahead of the reader; add new ones.
				for k := 0; k < 3 && removed < 200; k++ {
					h.must(&fuseops.UnlinkOp{Parent: id(d), Name: fmt.Sprintf("tmp%03d", (removed*7)%200)})
					removed++
				}
				h.mkfile(d, fmt.Sprintf("new%03d", added), "")
				added++
				if added%5 == 0 {
					h.must(&fuseops.UnlinkOp{Parent: id(d), Name: fmt.Sprintf("new%03d", added-3)})
				}
			}
			for name, n := range seen {
				if n != 1 {
					t.Errorf("%q returned %d times", name, n)
				}
			}
			for i := 0; i < 200; i++ {
				if seen[fmt.Sprintf("keep%03d", i)] != 1 {
					t.Errorf("keep%03d missed", i)
				}
			}
			if seen["."] != 1 || seen[".."] != 1 {
				t.Errorf("dots %d %d", seen["."], seen[".."])
			}
			h.must(&fuseops.ReleaseDirHandleOp{Handle: od.Handle})
		})
	}
}

func TestDirCompactionKeepsCookies(t *testing.T) {
	h := newHarness(t, Config{})
	d := h.mkdir(rootIno, "d", 0o755)
	for i := 0; i < 100; i++ {
		h.mkfile(d, fmt.Sprint("f", i), "")
	}
	cookieOf := map[string]uint64{}
	for _, e := range h.readdir(d, 0, 1<<16, false) {
		cookieOf[e.name] = e.off
	}
	for i := 0; i < 90; i++ {
		h.must(&fuseops.UnlinkOp{Parent: id(d), Name: fmt.Sprint("f", i)})
	}
	dd := h.st.inodes[d].dir
	if len(dd.ents) >= 90 {
		t.Fatalf("no compaction: %d slots for %d names", len(dd.ents), dd.live())
	}
	for _, e := range h.readdir(d, 2, 1<<16, false) {
		if cookieOf[e.name] != e.off {
			t.Fatalf("%q moved from cookie %d to %d", e.name, cookieOf[e.name], e.off)
		}
	}
	// Resuming from the cookie of a removed name continues after it.
	if ents := h.readdir(d, cookieOf["f50"], 1<<16, false); len(ents) != 10 || ents[0].name != "f90" {
		t.Fatalf("resume after removed cookie: %v", ents)
	}
	// A drained directory starts again and keeps counting cookies.
	for i := 90; i < 100; i++ {
		h.must(&fuseops.UnlinkOp{Parent: id(d), Name: fmt.Sprint("f", i)})
	}
	h.mkfile(d, "z", "")
	if ents := h.readdir(d, 2, 4096, false); len(ents) != 1 || ents[0].off <= cookieOf["f99"] {
		t.Fatalf("after drain: %v", ents)
	}
}

func TestMkdirNlinks(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.mkdir(rootIno, "a", 0o755)
	h.mkdir(a, "b", 0o755)
	h.mkdir(a, "c", 0o755)
	h.mkfile(a, "f", "")
	if n := h.attr(a).Nlink; n != 4 {
		t.Fatalf("a nlink %d, want 4", n)
	}
	if n := h.attr(rootIno).Nlink; n != 3 {
		t.Fatalf("root nlink %d, want 3", n)
	}
	h.must(&fuseops.RmDirOp{Parent: id(a), Name: "b"})
	if n := h.attr(a).Nlink; n != 3 {
		t.Fatalf("a nlink after rmdir %d, want 3", n)
	}
}
