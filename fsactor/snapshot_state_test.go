package fsactor

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jacobsa/fuse/fuseops"
)

// richVolume fills a volume with every kind of inode and some history.
func (h *harness) richVolume() {
	h.t.Helper()
	tr := h.tree()
	sg := h.mkdir(rootIno, "sg", os.ModeSetgid|0o770)
	for i := 0; i < 50; i++ {
		h.mkfile(sg, fmt.Sprintf("m%02d", i), strings.Repeat("x", i*100))
	}
	for i := 0; i < 50; i += 3 {
		h.must(&fuseops.UnlinkOp{Parent: id(sg), Name: fmt.Sprintf("m%02d", i)})
	}
	h.mkfile(sg, "m00", "back at the end")
	h.must(&fuseops.CreateLinkOp{Parent: id(tr.e), Name: "hard", Target: id(tr.f)})
	h.must(&fuseops.SetXattrOp{Inode: id(tr.f), Name: "user.k", Value: []byte("v")})
	h.must(&fuseops.SetXattrOp{Inode: id(tr.d), Name: "trusted.x", Value: []byte{0, 1, 2}})
	h.must(&fuseops.MkNodeOp{Parent: rootIno, Name: "dev", Mode: os.ModeDevice | 0o600, Rdev: 0x0803})
	ino, fh := h.create(rootIno, "sparse")
	h.write(ino, fh, 1<<20, "tail")
	h.must(&fuseops.SetInodeAttributesOp{Inode: id(ino), Size: ptr(uint64(1 << 40))})
	h.release(fh)
	g, gh := h.create(rootIno, "grown")
	h.must(&fuseops.SetInodeAttributesOp{Inode: id(g), Size: ptr(uint64(3000))})
	h.release(gh)
	// An unlinked file still open is not part of the volume.
	o, oh := h.create(rootIno, "orphan")
	h.write(o, oh, 0, "bye")
	h.must(&fuseops.UnlinkOp{Parent: rootIno, Name: "orphan"})
}

func TestSnapshotRoundTrip(t *testing.T) {
	h := newHarness(t, Config{})
	h.richVolume()
	snap, err := h.st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if snap.LSN != h.st.lsn || snap.NextIno != h.st.nextIno {
		t.Fatalf("snapshot lsn %d next %d", snap.LSN, snap.NextIno)
	}
	for _, si := range snap.Inodes {
		if si.Attr.Nlink == 0 && si.Ino != rootIno {
			t.Fatalf("unlinked inode %d in snapshot", si.Ino)
		}
	}
	st2, err := NewState(Config{}, snap)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	st2.CheckInvariants()
	snap2, err := st2.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(snap, snap2) {
		t.Fatalf("round trip differs:\n%+v\n%+v", snap, snap2)
	}
	// The restored volume answers like the original.
	h2 := &harness{t: t, st: st2, next: snap.LSN + 1, now: h.now, c: h.c}
	sg, _ := h.lookup(rootIno, "sg")
	if a, b := h.names(sg), h2.names(sg); !slices.Equal(a, b) || b[len(b)-1] != "m00" {
		t.Fatalf("entry order %v vs %v", a, b)
	}
	m10, _ := h2.lookup(sg, "m10")
	fh := h2.open(m10, syscall.O_RDONLY)
	if got := h2.read(m10, fh, 0, 5000); got != strings.Repeat("x", 1000) {
		t.Fatalf("content %d bytes", len(got))
	}
	sp, _ := h2.lookup(rootIno, "sparse")
	// Holes are neither in the snapshot nor filled by the restore: the
	// page written at 1 MiB is all the file holds, before and after.
	for _, si := range snap.Inodes {
		if si.Ino == sp && (len(si.Data) != pageSize || !reflect.DeepEqual(si.Extents, []Extent{{Off: 1 << 20, Len: pageSize}})) {
			t.Fatalf("sparse file in the snapshot: %d bytes in %v", len(si.Data), si.Extents)
		}
	}
	if a := st2.inodes[sp].allocated; a > pageSize {
		t.Fatalf("restored sparse file allocates %d bytes", a)
	}
	fh = h2.open(sp, syscall.O_RDONLY)
	if got := h2.read(sp, fh, 1<<20-1, 6); got != "\x00tail\x00" || h2.attr(sp).Size != 1<<40 {
		t.Fatalf("sparse %q size %d", got, h2.attr(sp).Size)
	}
	// The next record follows the snapshot, new inodes are new numbers.
	n := h2.mkdir(rootIno, "new", 0o755)
	if recs := h2.take(); n < snap.NextIno || recs[0].LSN != snap.LSN+1 {
		t.Fatalf("new inode %d (next %d), lsn %d", n, snap.NextIno, recs[0].LSN)
	}
}

func TestSnapshotEmptyVolume(t *testing.T) {
	h := newHarness(t, Config{})
	snap, err := h.st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewState(Config{}, snap)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.CheckInvariants()
	if eff := st.Handle(&fuseops.MkDirOp{Parent: rootIno, Name: "a"}, Caller{}, time.Now()); eff.Err != 0 || len(eff.Records) != 1 || eff.Records[0].LSN != snap.LSN+1 {
		t.Fatalf("mkdir after restore: %+v", eff)
	}
}

func TestBadSnapshotsAreRejected(t *testing.T) {
	dir := func(ino uint64, nlink uint32, ents ...SnapDirent) SnapInode {
		return SnapInode{Ino: ino, Attr: Attr{Mode: syscall.S_IFDIR | 0o755, Nlink: nlink}, Entries: ents}
	}
	file := func(ino uint64, nlink uint32) SnapInode {
		return SnapInode{Ino: ino, Attr: Attr{Mode: syscall.S_IFREG | 0o644, Nlink: nlink}}
	}
	cases := map[string]*Snapshot{
		"no root":        {NextIno: 5, Inodes: []SnapInode{file(2, 0)}},
		"root is a file": {NextIno: 5, Inodes: []SnapInode{file(1, 1)}},
		"dangling entry": {NextIno: 5, Inodes: []SnapInode{dir(1, 2, SnapDirent{Name: "a", Ino: 3})}},
		"bad nlink":      {NextIno: 5, Inodes: []SnapInode{dir(1, 2, SnapDirent{Name: "a", Ino: 2}), file(2, 2)}},
		"dir nlink":      {NextIno: 5, Inodes: []SnapInode{dir(1, 2, SnapDirent{Name: "a", Ino: 2}), dir(2, 2)}},
		"unreachable":    {NextIno: 5, Inodes: []SnapInode{dir(1, 2), file(2, 1)}},
		"cycle": {NextIno: 5, Inodes: []SnapInode{dir(1, 2),
			dir(2, 3, SnapDirent{Name: "b", Ino: 3}), dir(3, 3, SnapDirent{Name: "a", Ino: 2})}},
		"dir twice":   {NextIno: 5, Inodes: []SnapInode{dir(1, 4, SnapDirent{Name: "a", Ino: 2}, SnapDirent{Name: "b", Ino: 2}), dir(2, 2)}},
		"dup name":    {NextIno: 5, Inodes: []SnapInode{dir(1, 2, SnapDirent{Name: "a", Ino: 2}, SnapDirent{Name: "a", Ino: 3}), file(2, 1), file(3, 1)}},
		"bad name":    {NextIno: 5, Inodes: []SnapInode{dir(1, 2, SnapDirent{Name: "a/b", Ino: 2}), file(2, 1)}},
		"ino >= next": {NextIno: 2, Inodes: []SnapInode{dir(1, 2, SnapDirent{Name: "a", Ino: 2}), file(2, 1)}},
		"dup inode":   {NextIno: 5, Inodes: []SnapInode{dir(1, 2), dir(1, 2)}},
		"root named":  {NextIno: 5, Inodes: []SnapInode{dir(1, 3, SnapDirent{Name: "r", Ino: 1})}},
		"data > size": {NextIno: 5, Inodes: []SnapInode{dir(1, 2, SnapDirent{Name: "a", Ino: 2}),
			{Ino: 2, Attr: Attr{Mode: syscall.S_IFREG, Nlink: 1, Size: 1}, Data: []byte("ab")}}},
		"extent past size": {NextIno: 5, Inodes: []SnapInode{dir(1, 2, SnapDirent{Name: "a", Ino: 2}),
			{Ino: 2, Attr: Attr{Mode: syscall.S_IFREG, Nlink: 1, Size: 10}, Data: []byte("ab"), Extents: []Extent{{Off: 9, Len: 2}}}}},
		"extents unsorted": {NextIno: 5, Inodes: []SnapInode{dir(1, 2, SnapDirent{Name: "a", Ino: 2}),
			{Ino: 2, Attr: Attr{Mode: syscall.S_IFREG, Nlink: 1, Size: 10}, Data: []byte("ab"), Extents: []Extent{{Off: 5, Len: 1}, {Off: 1, Len: 1}}}}},
		"extents short": {NextIno: 5, Inodes: []SnapInode{dir(1, 2, SnapDirent{Name: "a", Ino: 2}),
			{Ino: 2, Attr: Attr{Mode: syscall.S_IFREG, Nlink: 1, Size: 10}, Data: []byte("ab"), Extents: []Extent{{Off: 5, Len: 1}}}}},
		"symlink size": {NextIno: 5, Inodes: []SnapInode{dir(1, 2, SnapDirent{Name: "l", Ino: 2}),
			{Ino: 2, Attr: Attr{Mode: syscall.S_IFLNK, Nlink: 1, Size: 9}, Target: "t"}}},
	}
	for name, snap := range cases {
		if _, err := NewState(Config{}, snap); !errors.Is(err, errBadSnapshot) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
