package fsactor

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/jacobsa/fuse/fuseops"
)

func TestSetattrModeOwnerTimes(t *testing.T) {
	h := newHarness(t, Config{})
	f := h.mkfile(rootIno, "f", "x")
	mode := os.FileMode(0o750) | os.ModeSetuid | os.ModeSetgid | os.ModeSticky
	at, mt := time.Unix(100, 5), time.Unix(200, 7)
	op := &fuseops.SetInodeAttributesOp{Inode: id(f), Mode: &mode, Uid: ptr(uint32(11)), Gid: ptr(uint32(22)),
		Atime: &at, Mtime: &mt}
	h.take()
	h.must(op)
	ns := h.now.UnixNano()
	a := h.attr(f)
	want := Attr{Mode: syscall.S_IFREG | syscall.S_ISUID | syscall.S_ISGID | syscall.S_ISVTX | 0o750,
		Uid: 11, Gid: 22, Nlink: 1, Size: 1, Atime: at.UnixNano(), Mtime: mt.UnixNano(), Ctime: ns}
	if a != want {
		t.Fatalf("attr %+v\nwant %+v", a, want)
	}
	if op.Attributes.Mode != mode || op.Attributes.Uid != 11 {
		t.Fatalf("reply %+v", op.Attributes)
	}
	recs := h.take()
	if len(recs) != 1 || recs[0].Op != RecSetattr || recs[0].Attr != want {
		t.Fatalf("records %+v", recs)
	}
	// The type never changes, whatever mode arrives.
	dirMode := os.ModeDir | 0o700
	h.must(&fuseops.SetInodeAttributesOp{Inode: id(f), Mode: &dirMode})
	if a := h.attr(f); a.Mode != syscall.S_IFREG|0o700 {
		t.Fatalf("mode %#o", a.Mode)
	}
	// setattr keeps the bits it is given: clearing suid is the kernel's job.
	h.must(&fuseops.SetInodeAttributesOp{Inode: id(f), Uid: ptr(uint32(0))})
	h.must(&fuseops.SetInodeAttributesOp{Inode: id(f), Mode: &mode})
	h.must(&fuseops.WriteFileOp{Inode: id(f), Data: []byte("y")})
	if a := h.attr(f); a.Mode&syscall.S_ISUID == 0 {
		t.Fatal("suid cleared by the state")
	}
}

func TestTruncateTimes(t *testing.T) {
	h := newHarness(t, Config{})
	f := h.mkfile(rootIno, "f", "0123")
	h.must(&fuseops.SetInodeAttributesOp{Inode: id(f), Size: ptr(uint64(2))})
	if a := h.attr(f); a.Mtime != h.now.UnixNano()-1e9 || a.Ctime != a.Mtime {
		t.Fatalf("truncate without mtime: %+v", a)
	}
	mt := time.Unix(5, 0)
	h.must(&fuseops.SetInodeAttributesOp{Inode: id(f), Size: ptr(uint64(1)), Mtime: &mt})
	if a := h.attr(f); a.Mtime != mt.UnixNano() || a.Ctime != h.now.UnixNano()-1e9 {
		t.Fatalf("truncate with mtime: %+v", a)
	}
	// Atime alone: ctime moves, mtime stays.
	at := time.Unix(9, 0)
	h.must(&fuseops.SetInodeAttributesOp{Inode: id(f), Atime: &at})
	if a := h.attr(f); a.Atime != at.UnixNano() || a.Mtime != mt.UnixNano() || a.Ctime != h.now.UnixNano()-1e9 {
		t.Fatalf("utimes atime: %+v", a)
	}
}

func TestTimesPerOp(t *testing.T) {
	h := newHarness(t, Config{})
	d := h.mkdir(rootIno, "d", 0o755)
	ns := h.now.UnixNano()
	if a := h.attr(d); a.Atime != ns || a.Mtime != ns || a.Ctime != ns {
		t.Fatalf("new dir %+v", a)
	}
	if a := h.attr(rootIno); a.Mtime != ns || a.Ctime != ns {
		t.Fatalf("parent after mkdir %+v", a)
	}
	ino, fh := h.create(d, "f")
	created := h.now.UnixNano()
	h.write(ino, fh, 0, "abc")
	wrote := h.now.UnixNano()
	if a := h.attr(ino); a.Atime != created || a.Mtime != wrote || a.Ctime != wrote {
		t.Fatalf("after write %+v", a)
	}
	h.read(ino, fh, 0, 3)
	if a := h.attr(ino); a.Atime != created {
		t.Fatal("read changed atime (noatime)")
	}
	if a := h.attr(d); a.Mtime != created {
		t.Fatal("write changed the parent")
	}
	h.must(&fuseops.FallocateOp{Inode: id(ino), Handle: fuseops.HandleID(fh), Length: 8192})
	if a := h.attr(ino); a.Mtime != h.now.UnixNano()-1e9 {
		t.Fatal("fallocate did not stamp mtime")
	}
	h.must(&fuseops.SetXattrOp{Inode: id(ino), Name: "user.a", Value: []byte("1")})
	if a := h.attr(ino); a.Ctime != h.now.UnixNano()-1e9 || a.Mtime == a.Ctime {
		t.Fatalf("setxattr times %+v", a)
	}
	sl := &fuseops.CreateSymlinkOp{Parent: id(d), Name: "l", Target: "f"}
	h.must(sl)
	if a := h.attr(d); a.Mtime != h.now.UnixNano()-1e9 {
		t.Fatal("symlink did not stamp the parent")
	}
}

func TestSetgidDirectories(t *testing.T) {
	h := newHarness(t, Config{})
	sg := h.mkdir(rootIno, "sg", os.ModeSetgid|0o775)
	h.must(&fuseops.SetInodeAttributesOp{Inode: id(sg), Gid: ptr(uint32(500))})
	h.c = Caller{Uid: 1000, Gid: 1000}
	f := h.mkfile(sg, "f", "")
	sub := h.mkdir(sg, "sub", 0o755)
	plain := h.mkdir(rootIno, "plain", 0o755)
	g := h.mkfile(plain, "g", "")
	cases := []struct {
		ino       uint64
		gid, mode uint32
	}{
		{f, 500, syscall.S_IFREG | 0o644},
		{sub, 500, syscall.S_IFDIR | syscall.S_ISGID | 0o755},
		{g, 1000, syscall.S_IFREG | 0o644},
		{plain, 1000, syscall.S_IFDIR | 0o755},
	}
	for _, c := range cases {
		if a := h.attr(c.ino); a.Gid != c.gid || a.Mode != c.mode || a.Uid != 1000 {
			t.Errorf("inode %d: %+v, want gid %d mode %#o", c.ino, a, c.gid, c.mode)
		}
	}
	// Nested: the inherited setgid bit passes the group on.
	h.c = Caller{Uid: 2000, Gid: 2000}
	deep := h.mkfile(sub, "deep", "")
	if a := h.attr(deep); a.Gid != 500 || a.Uid != 2000 {
		t.Fatalf("deep %+v", a)
	}
}

func TestStatFS(t *testing.T) {
	h := newHarness(t, Config{Capacity: 1 << 30, MaxInodes: 1000})
	st := &fuseops.StatFSOp{}
	h.must(st)
	if st.Blocks != 1<<30/4096 || st.BlocksFree != st.Blocks || st.Inodes != 1000 || st.InodesFree != 999 {
		t.Fatalf("empty volume %+v", st)
	}
	ino, fh := h.create(rootIno, "f")
	h.write(ino, fh, 0, string(make([]byte, 10<<20)))
	h.must(st)
	if used := st.Blocks - st.BlocksFree; used != 10<<20/4096 || st.InodesFree != 998 {
		t.Fatalf("after 10 MiB: used %d blocks, %+v", used, st)
	}
	// Derived limits are non-zero.
	h0 := newHarness(t, Config{})
	h0.must(st)
	if st.Blocks == 0 || st.Inodes < 1024 {
		t.Fatalf("derived limits %+v", st)
	}
}
