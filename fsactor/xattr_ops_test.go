package fsactor

import (
	"strings"
	"syscall"
	"testing"

	"github.com/jacobsa/fuse/fuseops"
)

func (h *harness) getxattr(ino uint64, name string, size int) (string, int, syscall.Errno) {
	h.t.Helper()
	op := &fuseops.GetXattrOp{Inode: id(ino), Name: name}
	if size > 0 {
		op.Dst = make([]byte, size)
	}
	e := h.errno(op)
	if e != 0 || size == 0 {
		return "", op.BytesRead, e
	}
	return string(op.Dst[:op.BytesRead]), op.BytesRead, 0
}

func (h *harness) listxattr(ino uint64, size int) (string, int, syscall.Errno) {
	h.t.Helper()
	op := &fuseops.ListXattrOp{Inode: id(ino)}
	if size > 0 {
		op.Dst = make([]byte, size)
	}
	e := h.errno(op)
	if e != 0 || size == 0 {
		return "", op.BytesRead, e
	}
	return string(op.Dst[:op.BytesRead]), op.BytesRead, 0
}

func TestXattrs(t *testing.T) {
	h := newHarness(t, Config{})
	f := h.mkfile(rootIno, "f", "")
	set := func(name, val string, flags uint32) syscall.Errno {
		return h.errno(&fuseops.SetXattrOp{Inode: id(f), Name: name, Value: []byte(val), Flags: flags})
	}
	h.take()
	if e := set("user.b", "2", 0); e != 0 {
		t.Fatal(e)
	}
	if e := set("user.a", "one", xattrCreate); e != 0 {
		t.Fatal(e)
	}
	recs := h.take()
	if len(recs) != 2 || recs[1].Op != RecSetXattr || recs[1].XattrName != "user.a" || string(recs[1].Data) != "one" {
		t.Fatalf("records %+v", recs)
	}
	cases := []struct {
		name string
		got  syscall.Errno
		want syscall.Errno
	}{
		{"create existing", set("user.a", "x", xattrCreate), syscall.EEXIST},
		{"replace missing", set("user.c", "x", xattrReplace), syscall.ENODATA},
		{"bad flags", set("user.c", "x", 4), syscall.EINVAL},
		{"long name", set("user."+strings.Repeat("n", 251), "x", 0), syscall.ERANGE},
		{"empty name", set("", "x", 0), syscall.ERANGE},
		{"value too big", set("user.c", strings.Repeat("v", 64<<10+1), 0), syscall.E2BIG},
		{"largest value", set("user.big", strings.Repeat("v", 64<<10), 0), 0},
		{"longest name", set("user."+strings.Repeat("n", 250), "x", 0), 0},
		{"replace existing", set("user.a", "uno", xattrReplace), 0},
		{"unknown namespace", set("foo.bar", "x", 0), syscall.EOPNOTSUPP},
		{"acl", set("system.posix_acl_access", "x", 0), syscall.EOPNOTSUPP},
		{"empty suffix", set("user.", "x", 0), syscall.EINVAL},
		{"trusted", set("trusted.t", "x", 0), 0},
		{"security", set("security.s", "x", 0), 0},
		{"remove missing", h.errno(&fuseops.RemoveXattrOp{Inode: id(f), Name: "user.zz"}), syscall.ENODATA},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
	if v, n, e := h.getxattr(f, "user.a", 0); e != 0 || n != 3 || v != "" {
		t.Fatalf("size query %d %v", n, e)
	}
	if _, _, e := h.getxattr(f, "user.a", 2); e != syscall.ERANGE {
		t.Fatalf("short buffer: %v", e)
	}
	if v, _, e := h.getxattr(f, "user.a", 10); e != 0 || v != "uno" {
		t.Fatalf("get %q %v", v, e)
	}
	if _, _, e := h.getxattr(f, "user.none", 10); e != syscall.ENODATA {
		t.Fatalf("missing: %v", e)
	}
	if _, _, e := h.getxattr(f, "foo.none", 10); e != syscall.EOPNOTSUPP {
		t.Fatalf("unknown namespace: %v", e)
	}
	wantList := "security.s\x00trusted.t\x00user.a\x00user.b\x00user.big\x00user." + strings.Repeat("n", 250) + "\x00"
	if _, n, e := h.listxattr(f, 0); e != 0 || n != len(wantList) {
		t.Fatalf("list size %d %v", n, e)
	}
	if _, _, e := h.listxattr(f, 5); e != syscall.ERANGE {
		t.Fatalf("list short: %v", e)
	}
	if l, _, _ := h.listxattr(f, 4096); l != wantList {
		t.Fatalf("list %q", l)
	}
	h.take()
	h.must(&fuseops.RemoveXattrOp{Inode: id(f), Name: "user.b"})
	if recs := h.take(); len(recs) != 1 || recs[0].Op != RecRemoveXattr || recs[0].XattrName != "user.b" {
		t.Fatalf("remove records %+v", recs)
	}
	if _, _, e := h.getxattr(f, "user.b", 10); e != syscall.ENODATA {
		t.Fatal("removed xattr still there")
	}
	// The value is copied: jacobsa reuses its buffer.
	buf := []byte("val")
	h.must(&fuseops.SetXattrOp{Inode: id(f), Name: "user.copy", Value: buf})
	buf[0] = 'X'
	if v, _, _ := h.getxattr(f, "user.copy", 10); v != "val" {
		t.Fatalf("value aliased the op buffer: %q", v)
	}
	// Empty values exist.
	h.must(&fuseops.SetXattrOp{Inode: id(f), Name: "user.empty"})
	if _, n, e := h.getxattr(f, "user.empty", 0); e != 0 || n != 0 {
		t.Fatalf("empty value: %d %v", n, e)
	}
	// An inode without xattrs lists nothing.
	if _, n, e := h.listxattr(rootIno, 0); e != 0 || n != 0 {
		t.Fatalf("empty list %d %v", n, e)
	}
}
