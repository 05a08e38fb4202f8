package fsactor

import (
	"context"
	"encoding/binary"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/jacobsa/fuse/fuseops"
)

// recSink records every record and checks their LSNs are consecutive.
type recSink struct {
	recs    []*Record
	next    uint64 // the LSN the next record must carry
	bad     string // first LSN error seen
	durable uint64
}

func (s *recSink) Append(r *Record) {
	if r.LSN != s.next && s.bad == "" {
		s.bad = "record " + r.Op.String() + " out of sequence"
	}
	s.next = r.LSN + 1
	s.recs = append(s.recs, r)
}
func (s *recSink) Durable() uint64                            { return s.durable }
func (s *recSink) Wait(ctx context.Context, lsn uint64) error { return nil }

// harness drives a State without a mount, doing what the loop does with
// a step's Effects minus the I/O: every step advances the clock by a
// second and checks the invariants, then the step's records (checked to
// carry consecutive LSNs) and notes are taken out of the Effects, which is
// reset.
type harness struct {
	t     *testing.T
	st    *State
	recs  []*Record // records taken from the Effects since the last take
	notes []Note    // notes taken from the Effects since the last takeNotes
	next  uint64    // the LSN the next record must carry
	limit Limit     // the limit the last step hit (Effects.Limit)
	now   time.Time
	c     Caller
}

var t0 = time.Unix(1_700_000_000, 0)

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	st, err := NewState(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	st.CheckInvariants()
	return &harness{t: t, st: st, next: 1, now: t0, c: Caller{Uid: 1000, Gid: 1000, Pid: 42}}
}

// take returns the records emitted since the last call, data records
// read as a sink reads them (readContent).
func (h *harness) take() []*Record {
	recs := h.takeRaw()
	for _, r := range recs {
		readContent(h.t, r)
	}
	return recs
}

// takeRaw returns the records emitted since the last call as the actor
// emitted them: data records with their content view unread.
func (h *harness) takeRaw() []*Record {
	r := h.recs
	h.recs = nil
	return r
}

// readContent reads a data record's content view into Data and Extents
// and releases it, as replication does off the actor.
func readContent(t testing.TB, r *Record) {
	t.Helper()
	if r.Content == nil {
		return
	}
	var err error
	r.Extents, r.Data, err = r.Content.Read()
	r.Content.Release()
	r.Content = nil
	if err != nil {
		t.Fatalf("reading the content of lsn %d: %v", r.LSN, err)
	}
}

// takeNotes returns the notes produced since the last call.
func (h *harness) takeNotes() []Note {
	n := h.notes
	h.notes = nil
	return n
}

// collect takes the records and notes out of the state's Effects and
// resets it, as the loop's apply does.
func (h *harness) collect() {
	h.t.Helper()
	eff := h.st.Effects()
	for _, r := range eff.Records {
		if r.LSN != h.next {
			h.t.Fatalf("record %s has lsn %d, want %d", r.Op, r.LSN, h.next)
		}
		h.next = r.LSN + 1
	}
	h.recs = append(h.recs, eff.Records...)
	h.notes = append(h.notes, eff.Notes...)
	h.limit = eff.Limit
	eff.Reset()
}

// do runs one op and checks the invariants and the record sequence.
func (h *harness) do(op any) (uint64, error) {
	h.t.Helper()
	h.now = h.now.Add(time.Second)
	eff := h.st.Handle(op, h.c, h.now)
	w, e := eff.WaitLSN, eff.Err
	h.st.CheckInvariants()
	h.collect()
	if e != 0 {
		return w, e
	}
	return w, nil
}

// must runs op and fails the test on an error.
func (h *harness) must(op any) uint64 {
	h.t.Helper()
	w, err := h.do(op)
	if err != nil {
		h.t.Fatalf("%T %+v: %v", op, op, err)
	}
	return w
}

// errno runs op and returns its errno (0 for success).
func (h *harness) errno(op any) syscall.Errno {
	h.t.Helper()
	_, err := h.do(op)
	if err == nil {
		return 0
	}
	return err.(syscall.Errno)
}

func (h *harness) wantErrno(want syscall.Errno, op any) {
	h.t.Helper()
	if got := h.errno(op); got != want {
		h.t.Fatalf("%T %+v: errno %v (%d), want %v (%d)", op, op, got, got, want, want)
	}
}

func id(i uint64) fuseops.InodeID { return fuseops.InodeID(i) }

func (h *harness) mkdir(parent uint64, name string, mode os.FileMode) uint64 {
	h.t.Helper()
	op := &fuseops.MkDirOp{Parent: id(parent), Name: name, Mode: mode | os.ModeDir}
	h.must(op)
	return uint64(op.Entry.Child)
}

// create makes a file and returns its inode and an open handle.
func (h *harness) create(parent uint64, name string) (uint64, uint64) {
	h.t.Helper()
	op := &fuseops.CreateFileOp{Parent: id(parent), Name: name, Mode: 0o644, OpenFlags: syscall.O_RDWR}
	h.must(op)
	return uint64(op.Entry.Child), uint64(op.Handle)
}

// mkfile makes a file, writes data, flushes and releases it.
func (h *harness) mkfile(parent uint64, name, data string) uint64 {
	h.t.Helper()
	ino, fh := h.create(parent, name)
	if data != "" {
		h.write(ino, fh, 0, data)
	}
	h.must(&fuseops.FlushFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh)})
	h.must(&fuseops.ReleaseFileHandleOp{Handle: fuseops.HandleID(fh)})
	return ino
}

func (h *harness) open(ino uint64, flags int) uint64 {
	h.t.Helper()
	op := &fuseops.OpenFileOp{Inode: id(ino)}
	setFlags(&op.OpenFlags, flags)
	h.must(op)
	if !op.KeepPageCache {
		h.t.Fatal("open without KeepPageCache")
	}
	return uint64(op.Handle)
}

// setFlags sets jacobsa's open flags (a type of an internal package).
func setFlags[T ~uint32](p *T, flags int) { *p = T(flags) }

func (h *harness) write(ino, fh uint64, off int64, data string) {
	h.t.Helper()
	h.must(&fuseops.WriteFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh), Offset: off, Data: []byte(data)})
}

func (h *harness) read(ino, fh uint64, off int64, n int) string {
	h.t.Helper()
	op := &fuseops.ReadFileOp{Inode: id(ino), Handle: fuseops.HandleID(fh), Offset: off, Size: int64(n), Dst: make([]byte, n)}
	for i := range op.Dst {
		op.Dst[i] = 0xAA // a read must not leave garbage
	}
	h.must(op)
	return string(op.Dst[:op.BytesRead])
}

func (h *harness) release(fh uint64) {
	h.t.Helper()
	h.must(&fuseops.ReleaseFileHandleOp{Handle: fuseops.HandleID(fh)})
}

func (h *harness) lookup(parent uint64, name string) (uint64, error) {
	h.t.Helper()
	op := &fuseops.LookUpInodeOp{Parent: id(parent), Name: name}
	_, err := h.do(op)
	return uint64(op.Entry.Child), err
}

func (h *harness) attr(ino uint64) Attr {
	h.t.Helper()
	in, ok := h.st.inodes[ino]
	if !ok {
		h.t.Fatalf("inode %d is gone", ino)
	}
	op := &fuseops.GetInodeAttributesOp{Inode: id(ino)}
	h.now = h.now.Add(time.Second)
	if e := h.st.Handle(op, h.c, h.now).Err; e != 0 {
		h.t.Fatal(e)
	}
	h.collect()
	if op.Attributes.Size != in.attr.Size || op.Attributes.Nlink != in.attr.Nlink {
		h.t.Fatalf("getattr %+v disagrees with %+v", op.Attributes, in.attr)
	}
	return in.attr
}

func (h *harness) forget(ino, n uint64) {
	h.t.Helper()
	h.must(&fuseops.ForgetInodeOp{Inode: id(ino), N: n})
}

func (h *harness) live(ino uint64) bool {
	_, ok := h.st.inodes[ino]
	return ok
}

// freedByForget checks that ino (unlinked, what names it in a failure) is
// kept while the kernel holds its n lookups and freed by their FORGET: the
// kernel's reference, not a name, keeps such an inode.
func (h *harness) freedByForget(ino, n uint64, what string) {
	h.t.Helper()
	if !h.live(ino) {
		h.t.Fatalf("%s, which the kernel holds, was freed", what)
	}
	h.forget(ino, n)
	if h.live(ino) {
		h.t.Fatalf("FORGET did not free %s", what)
	}
}

// dirEntry is one entry parsed back from a READDIR(PLUS) buffer.
type dirEntry struct {
	ino, off uint64
	typ      uint32
	name     string
	nodeid   uint64 // READDIRPLUS: the entry's node id
}

const entryOutSize = 40 + 88 // fuse_entry_out with its fuse_attr

// parseDirents decodes what WriteDirent / WriteDirentPlus wrote.
func parseDirents(buf []byte, plus bool) []dirEntry {
	var out []dirEntry
	for len(buf) > 0 {
		var e dirEntry
		if plus {
			e.nodeid = binary.LittleEndian.Uint64(buf)
			buf = buf[entryOutSize:]
		}
		e.ino = binary.LittleEndian.Uint64(buf)
		e.off = binary.LittleEndian.Uint64(buf[8:])
		n := binary.LittleEndian.Uint32(buf[16:])
		e.typ = binary.LittleEndian.Uint32(buf[20:])
		e.name = string(buf[24 : 24+n])
		out = append(out, e)
		buf = buf[(24+int(n)+7)&^7:]
	}
	return out
}

// readdir reads one buffer of entries from off.
func (h *harness) readdir(dir uint64, off uint64, size int, plus bool) []dirEntry {
	h.t.Helper()
	rd := fuseops.ReadDirOp{Inode: id(dir), Offset: fuseops.DirOffset(off), Dst: make([]byte, size)}
	if plus {
		op := &fuseops.ReadDirPlusOp{ReadDirOp: rd}
		h.must(op)
		return parseDirents(op.Dst[:op.BytesRead], true)
	}
	h.must(&rd)
	return parseDirents(rd.Dst[:rd.BytesRead], false)
}

// names lists a directory (without "." and "..") through READDIR.
func (h *harness) names(dir uint64) []string {
	h.t.Helper()
	var out []string
	var off uint64
	for {
		ents := h.readdir(dir, off, 4096, false)
		if len(ents) == 0 {
			return out
		}
		for _, e := range ents {
			if e.name != "." && e.name != ".." {
				out = append(out, e.name)
			}
			off = e.off
		}
	}
}

func TestNewStateRoot(t *testing.T) {
	h := newHarness(t, Config{RootUid: 7, RootGid: 8, RootMode: 0o1777})
	a := h.attr(rootIno)
	if a.Mode != syscall.S_IFDIR|0o1777 || a.Uid != 7 || a.Gid != 8 || a.Nlink != 2 {
		t.Fatalf("root attr %+v", a)
	}
	h2 := newHarness(t, Config{})
	if a := h2.attr(rootIno); a.Mode != syscall.S_IFDIR|0o755 {
		t.Fatalf("default root mode %#o", a.Mode)
	}
	if got := h2.names(rootIno); len(got) != 0 {
		t.Fatalf("new volume lists %v", got)
	}
}

func TestUnknownOpIsENOSYS(t *testing.T) {
	h := newHarness(t, Config{})
	h.wantErrno(syscall.ENOSYS, struct{}{})
	h.wantErrno(syscall.ENOENT, &fuseops.ReadDirOp{Inode: 99})
}
