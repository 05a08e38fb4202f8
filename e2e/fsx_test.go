package e2e

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fsx (xfstests ltp/fsx.c) as a Go port of its core loop: random reads,
// writes, mapped reads and writes, truncates, fallocate modes,
// copy_file_range within the file, fsyncs and reopens on one file of the
// real mount, each checked against an in-memory model of the file. Issue
// 13 moved contents into shared memfd arenas (slots for files ≤ 64 KiB,
// a memfd of their own above): the profiles keep files in slots, make
// them cross the slot/memfd boundary both ways, and keep them large.
var (
	flagFSXSeed = flag.Uint64("fsx.seed", 0, "seed of TestFSX (0: from the clock; FSX_SEED also sets it)")
	flagFSXOps  = flag.Int("fsx.ops", 0, "operations per TestFSX profile (0: the short form; FSX_OPS also sets it)")
)

// fsxProfile is one fsx configuration: -l maxlen, -o maxoplen, -N ops.
type fsxProfile struct {
	name     string
	maxLen   int64 // the file never grows past this (fsx -l)
	maxOpLen int64 // one operation touches at most this (fsx -o)
	ops      int   // short form (fsx -N)
	mmap     bool  // mapread/mapwrite in the mix (fsx without -R -W)
	nowb     bool  // on a mount with --writeback-cache=false: every write reaches the server
}

// fsxProfiles are the runs of TestFSX; the short forms take a few
// seconds each on a shared 2-core machine.
var fsxProfiles = []fsxProfile{
	{name: "small", maxLen: 16 << 10, maxOpLen: 4 << 10, ops: 3000, mmap: true},
	{name: "small-nommap", maxLen: 16 << 10, maxOpLen: 4 << 10, ops: 1000},
	{name: "crossing", maxLen: 256 << 10, maxOpLen: 64 << 10, ops: 3000, mmap: true},
	{name: "crossing-nommap", maxLen: 256 << 10, maxOpLen: 64 << 10, ops: 1000},
	{name: "large", maxLen: 8 << 20, maxOpLen: 1 << 20, ops: 300, mmap: true},
	{name: "crossing-nowb", maxLen: 256 << 10, maxOpLen: 64 << 10, ops: 2000, mmap: true, nowb: true},
}

// TestFSX runs every profile on a --local mount of the real binary (on a
// tmpfs with -e2e.subject=tmpfs, which checks the port itself). The seed
// is printed; a failure prints the tail of the operation log.
func TestFSX(t *testing.T) {
	seed := fsxSeed(t)
	sub, _ := mountSubject(t)
	nowb := "" // mounted by the first profile that needs it
	for i, prof := range fsxProfiles {
		if prof.nowb && nowb == "" {
			nowb, _ = mountSubject(t, "--writeback-cache=false")
		}
		t.Run(prof.name, func(t *testing.T) {
			prof.ops = fsxOps(prof.ops)
			dir := sub
			if prof.nowb {
				dir = nowb
			}
			path := filepath.Join(dir, "fsx-"+prof.name)
			runFSX(t, path, prof, seed+uint64(i))
		})
	}
}

// TestFSXReplicated runs a short crossing profile on a replicated mount,
// then stops the primary and checks that a new primary recovered from the
// replicas serves exactly the model's content: the data records' ranges
// (issue 13) carried every write, punch, zeroing and truncate.
func TestFSXReplicated(t *testing.T) {
	requireCluster(t)
	seed := fsxSeed(t)
	c := newCluster(t, 3)
	const vol = "fsx"
	pr := c.startPrimary(vol, "p1")
	prof := fsxProfile{name: "replicated", maxLen: 256 << 10, maxOpLen: 64 << 10, ops: fsxOps(500), mmap: true}
	m := runFSX(t, pr.path("fsx"), prof, seed)
	if t.Failed() || waitConverged(t, c, vol) == 0 {
		t.FailNow()
	}
	pr.stop(t)
	p2 := c.startPrimary(vol, "p2")
	defer p2.stop(t)
	fd, err := unix.Open(p2.path("fsx"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open on the recovered primary: %v", err)
	}
	defer unix.Close(fd)
	if err := m.checkAll(fd); err != nil {
		t.Fatalf("seed %d: recovered file: %v", seed, err)
	}
}

// fsxSeed is the run's seed, printed so that a failure can be replayed
// with -fsx.seed.
func fsxSeed(t *testing.T) uint64 {
	seed := *flagFSXSeed
	if s := os.Getenv("FSX_SEED"); s != "" && seed == 0 {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FSX_SEED=%q: %v", s, err)
		}
		seed = v
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("fsx seed %d (replay with -fsx.seed=%d)", seed, seed)
	return seed
}

// fsxOps is the number of operations: -fsx.ops or FSX_OPS if set (the
// long form), else the profile's short form.
func fsxOps(short int) int {
	if *flagFSXOps > 0 {
		return *flagFSXOps
	}
	if v, err := strconv.Atoi(os.Getenv("FSX_OPS")); err == nil && v > 0 {
		return v
	}
	return short
}

// fsxCheckEvery is how often (in operations) the whole file is compared,
// besides the touched range after each operation.
const fsxCheckEvery = 50

// fsxLogTail is how many operations a failure prints.
const fsxLogTail = 40

// fsx is one run: the file on the mount, its model and the operation log.
type fsx struct {
	t    *testing.T
	path string
	prof fsxProfile
	rng  *rand.Rand
	fd   int
	good []byte // the model: the file's content; len(good) is its size
	log  []string
	n    int // operation number

	crossings int // size changes across fsxSlotMax (slot ↔ memfd moves)
}

// fsxSlotMax is the largest file fsactor keeps in an arena slot
// (fsactor/arena.go); the run counts the size changes across it.
const fsxSlotMax = 64 << 10

// runFSX creates path and runs prof's operations on it; it returns the
// run (its model) for checks after it.
func runFSX(t *testing.T, path string, prof fsxProfile, seed uint64) *fsx {
	t.Helper()
	f := &fsx{t: t, path: path, prof: prof, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatalf("create %s: %v", path, err)
	}
	f.fd = fd
	defer func() { unix.Close(f.fd) }()
	start := time.Now()
	for f.n = 1; f.n <= prof.ops; f.n++ {
		if err := f.step(); err != nil {
			f.fail(seed, err)
			return f
		}
		if f.n%fsxCheckEvery == 0 {
			if err := f.evict(); err != nil {
				f.fail(seed, fmt.Errorf("whole-file check: %w", err))
				return f
			}
		}
	}
	if err := f.checkAll(f.fd); err != nil {
		f.fail(seed, fmt.Errorf("final check: %w", err))
	}
	t.Logf("%s: %d operations (maxlen %d, maxoplen %d, mmap %v) in %v; final size %d; %d size changes across %d bytes",
		prof.name, prof.ops, prof.maxLen, prof.maxOpLen, prof.mmap, time.Since(start).Round(time.Millisecond), len(f.good), f.crossings, fsxSlotMax)
	return f
}

// fail reports err with the seed and the tail of the operation log, as
// fsx's report does.
func (f *fsx) fail(seed uint64, err error) {
	tail := f.log
	if len(tail) > fsxLogTail {
		tail = tail[len(tail)-fsxLogTail:]
	}
	f.t.Errorf("fsx %s seed %d, operation %d: %v\nlast operations:\n%s", f.prof.name, seed, f.n, err, strings.Join(tail, "\n"))
}

// logf appends to the operation log (kept short: only the tail is shown).
func (f *fsx) logf(format string, args ...any) {
	if len(f.log) >= 4*fsxLogTail {
		f.log = append(f.log[:0], f.log[len(f.log)-fsxLogTail:]...)
	}
	f.log = append(f.log, fmt.Sprintf("%6d ", f.n)+fmt.Sprintf(format, args...))
}

// step picks one operation with fsx's weights and runs it.
func (f *fsx) step() error {
	ops := []func() error{
		f.read, f.read, f.write, f.write, f.write, f.truncate,
		f.fallocate, f.fallocate, f.copyRange, f.fsync, f.reopen, f.evict,
	}
	if f.prof.mmap {
		ops = append(ops, f.mapread, f.mapwrite, f.mapwrite)
	}
	return ops[f.rng.IntN(len(ops))]()
}

// span picks an offset below limit and a length of 1..maxOpLen that ends
// at or below limit (fsx's offset and size choice).
func (f *fsx) span(limit int64) (off, n int64) {
	if limit <= 0 {
		return 0, 0
	}
	off = f.rng.Int64N(limit)
	n = 1 + f.rng.Int64N(f.prof.maxOpLen)
	return off, min(n, limit-off)
}

func (f *fsx) size() int64 { return int64(len(f.good)) }

// setSize grows (with zeros) or shrinks the model.
func (f *fsx) setSize(n int64) {
	if (n > fsxSlotMax) != (f.size() > fsxSlotMax) {
		f.crossings++
	}
	if n <= f.size() {
		f.good = f.good[:n]
		return
	}
	f.good = append(f.good, make([]byte, n-f.size())...)
}

// fill is fsx's pattern: distinct per operation and offset, never zero
// everywhere, so a stale or misplaced byte shows.
func (f *fsx) fill(off, n int64) []byte {
	var period [251]byte // the pattern repeats every 251 bytes
	for i := range period {
		period[i] = byte((off+int64(i))%251) + byte(f.n) | 1
	}
	b := make([]byte, n)
	for i := 0; i < len(b); i += len(period) {
		copy(b[i:], period[:]) // a memmove, not a loop the race detector instruments
	}
	return b
}

func (f *fsx) read() error {
	off, n := f.span(f.size())
	if n == 0 {
		f.logf("read skipped (empty file)")
		return nil
	}
	f.logf("read 0x%x thru 0x%x (0x%x bytes)", off, off+n-1, n)
	return f.checkRange(f.fd, off, n)
}

func (f *fsx) write() error {
	off, n := f.span(f.prof.maxLen)
	f.logf("write 0x%x thru 0x%x (0x%x bytes) size 0x%x", off, off+n-1, n, f.size())
	b := f.fill(off, n)
	if w, err := unix.Pwrite(f.fd, b, off); err != nil || int64(w) != n {
		return fmt.Errorf("pwrite(%d, %d): %d %v", off, n, w, err)
	}
	if off+n > f.size() {
		f.setSize(off + n)
	}
	copy(f.good[off:], b)
	return f.checkAfter(off, n)
}

// truncate picks a size up to maxlen, and 0 one time in eight: a memfd
// file truncated to 0 frees its memfd and grows again in a slot
// (fsactor/arena.go), a move a uniform size would almost never make.
func (f *fsx) truncate() error {
	n := f.rng.Int64N(f.prof.maxLen + 1)
	if f.rng.IntN(8) == 0 {
		n = 0
	}
	f.logf("truncate 0x%x to 0x%x", f.size(), n)
	if err := unix.Ftruncate(f.fd, n); err != nil {
		return fmt.Errorf("ftruncate(%d): %w", n, err)
	}
	f.setSize(n)
	// What was cut and grown back must read as zeros.
	return f.checkAfter(max(0, n-f.prof.maxOpLen), f.prof.maxOpLen)
}

// fallocate modes of fsx: plain, KEEP_SIZE, PUNCH_HOLE and ZERO_RANGE.
var fsxFallocModes = []struct {
	mode uint32
	name string
}{
	{0, "fallocate"},
	{unix.FALLOC_FL_KEEP_SIZE, "fallocate keep_size"},
	{unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE, "punch_hole"},
	{unix.FALLOC_FL_ZERO_RANGE, "zero_range"},
	{unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE, "zero_range keep_size"},
}

func (f *fsx) fallocate() error {
	m := fsxFallocModes[f.rng.IntN(len(fsxFallocModes))]
	off, n := f.span(f.prof.maxLen)
	f.logf("%s 0x%x thru 0x%x (0x%x bytes) size 0x%x", m.name, off, off+n-1, n, f.size())
	err := unix.Fallocate(f.fd, m.mode, off, n)
	if err == unix.EOPNOTSUPP && m.mode&unix.FALLOC_FL_ZERO_RANGE != 0 && *flagSubject == "tmpfs" {
		// tmpfs has no ZERO_RANGE (fsx disables the mode there); spoolfs
		// must support it (issue 13).
		f.logf("zero_range unsupported by the reference tmpfs")
		return nil
	}
	if err != nil {
		return fmt.Errorf("fallocate(%#x, %d, %d): %w", m.mode, off, n, err)
	}
	end := off + n
	if m.mode&unix.FALLOC_FL_KEEP_SIZE == 0 && end > f.size() {
		f.setSize(end)
	}
	if m.mode&(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_ZERO_RANGE) != 0 && off < f.size() {
		clear(f.good[off:min(end, f.size())])
	}
	return f.checkAfter(off, n)
}

// copyRange copies within the file between ranges that do not overlap
// (the kernel refuses an overlapping copy in one file with EINVAL).
func (f *fsx) copyRange() error {
	src, n := f.span(f.size())
	if n == 0 {
		f.logf("copy_range skipped (empty file)")
		return nil
	}
	dst := f.rng.Int64N(f.prof.maxLen - n + 1)
	if dst < src+n && src < dst+n {
		f.logf("copy_range skipped (0x%x and 0x%x overlap)", src, dst)
		return nil
	}
	f.logf("copy_range 0x%x thru 0x%x (0x%x bytes) to 0x%x size 0x%x", src, src+n-1, n, dst, f.size())
	done := int64(0)
	for done < n {
		so, do := src+done, dst+done
		c, err := unix.CopyFileRange(f.fd, &so, f.fd, &do, int(n-done), 0)
		if err != nil {
			return fmt.Errorf("copy_file_range(%d→%d, %d) after %d bytes: %w", src, dst, n, done, err)
		}
		if c == 0 {
			return fmt.Errorf("copy_file_range(%d→%d, %d): 0 after %d bytes", src, dst, n, done)
		}
		done += int64(c)
	}
	b := append([]byte(nil), f.good[src:src+n]...)
	if dst+n > f.size() {
		f.setSize(dst + n)
	}
	copy(f.good[dst:], b)
	return f.checkAfter(dst, n)
}

func (f *fsx) fsync() error {
	f.logf("fsync")
	if err := unix.Fsync(f.fd); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	return nil
}

// evict writes the file's dirty pages back and drops its page cache,
// then compares the whole file: the reads reach the server's content (the
// arena slot or memfd), not pages this kernel kept.
func (f *fsx) evict() error {
	f.logf("fdatasync, fadvise dontneed, check all")
	if err := unix.Fdatasync(f.fd); err != nil {
		return fmt.Errorf("fdatasync: %w", err)
	}
	if err := unix.Fadvise(f.fd, 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("fadvise dontneed: %w", err)
	}
	return f.checkAll(f.fd)
}

// reopen closes the file (a FLUSH and RELEASE) and opens it again.
func (f *fsx) reopen() error {
	f.logf("close/open")
	if err := unix.Close(f.fd); err != nil {
		f.fd = -1
		return fmt.Errorf("close: %w", err)
	}
	fd, err := unix.Open(f.path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		f.fd = -1
		return fmt.Errorf("reopen: %w", err)
	}
	f.fd = fd
	return f.checkSize(f.fd)
}

// mapread reads a range through a MAP_SHARED mapping of the file.
func (f *fsx) mapread() error {
	off, n := f.span(f.size())
	if n == 0 {
		f.logf("mapread skipped (empty file)")
		return nil
	}
	f.logf("mapread 0x%x thru 0x%x (0x%x bytes)", off, off+n-1, n)
	pg := off &^ int64(os.Getpagesize()-1)
	m, err := unix.Mmap(f.fd, pg, int(off+n-pg), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap read (%d, %d): %w", pg, off+n-pg, err)
	}
	got := append([]byte(nil), m[off-pg:]...)
	if err := unix.Munmap(m); err != nil {
		return fmt.Errorf("munmap: %w", err)
	}
	return f.compare("mapread", off, got)
}

// mapwrite extends the file if needed (fsx's domapwrite does the same),
// writes a range through a MAP_SHARED mapping and msyncs it.
func (f *fsx) mapwrite() error {
	off, n := f.span(f.prof.maxLen)
	f.logf("mapwrite 0x%x thru 0x%x (0x%x bytes) size 0x%x", off, off+n-1, n, f.size())
	if off+n > f.size() {
		if err := unix.Ftruncate(f.fd, off+n); err != nil {
			return fmt.Errorf("ftruncate before mapwrite (%d): %w", off+n, err)
		}
		f.setSize(off + n)
	}
	pg := off &^ int64(os.Getpagesize()-1)
	m, err := unix.Mmap(f.fd, pg, int(off+n-pg), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap write (%d, %d): %w", pg, off+n-pg, err)
	}
	b := f.fill(off, n)
	copy(m[off-pg:], b)
	if err := unix.Msync(m, unix.MS_SYNC); err != nil {
		_ = unix.Munmap(m)
		return fmt.Errorf("msync: %w", err)
	}
	if err := unix.Munmap(m); err != nil {
		return fmt.Errorf("munmap: %w", err)
	}
	copy(f.good[off:], b)
	return f.checkAfter(off, n)
}

// checkAfter checks the size and the touched range (clipped to the file).
func (f *fsx) checkAfter(off, n int64) error {
	if err := f.checkSize(f.fd); err != nil {
		return err
	}
	end := min(off+n, f.size())
	if off >= end {
		return nil
	}
	return f.checkRange(f.fd, off, end-off)
}

// checkSize compares fstat's size with the model's.
func (f *fsx) checkSize(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("fstat: %w", err)
	}
	if st.Size != f.size() {
		return fmt.Errorf("size: file has 0x%x, model 0x%x", st.Size, f.size())
	}
	return nil
}

// checkAll compares the size and every byte (and that a read at the end
// returns nothing).
func (f *fsx) checkAll(fd int) error {
	if err := f.checkSize(fd); err != nil {
		return err
	}
	if err := f.checkRange(fd, 0, f.size()); err != nil {
		return err
	}
	var b [1]byte
	if n, err := unix.Pread(fd, b[:], f.size()); n != 0 || err != nil {
		return fmt.Errorf("pread at the end (0x%x): %d bytes, %v", f.size(), n, err)
	}
	return nil
}

// checkRange preads [off, off+n) and compares it with the model.
func (f *fsx) checkRange(fd int, off, n int64) error {
	got := make([]byte, n)
	done := int64(0)
	for done < n {
		r, err := unix.Pread(fd, got[done:], off+done)
		if err != nil {
			return fmt.Errorf("pread(%d, %d): %w", off+done, n-done, err)
		}
		if r == 0 {
			return fmt.Errorf("pread(%d, %d): short read, %d of %d bytes", off, n, done, n)
		}
		done += int64(r)
	}
	return f.compare("read", off, got)
}

// compare reports the first differing bytes as fsx does (offset, good,
// bad, and how far the difference runs).
func (f *fsx) compare(what string, off int64, got []byte) error {
	want := f.good[off : off+int64(len(got))]
	if bytes.Equal(got, want) {
		return nil
	}
	i := 0
	for got[i] == want[i] {
		i++
	}
	j := i
	for j < len(got) && got[j] != want[j] {
		j++
	}
	k := min(i+16, len(got))
	return fmt.Errorf("%s: bad data at 0x%x (0x%x bytes differ from there): good % x, bad % x",
		what, off+int64(i), j-i, want[i:k], got[i:k])
}
