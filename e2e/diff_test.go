package e2e

import (
	"flag"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var (
	flagDiffOps = flag.Int("diff.ops", 20000,
		"operations of the differential test (millions by hand: add -timeout 0)")
	flagDiffSeed  = flag.Int64("diff.seed", 0, "seed of the differential test (0: time-based, printed)")
	flagDiffCheck = flag.Int("diff.check", 500, "compare the whole trees every N operations")
)

// traceLen is how many of the last operations a divergence report shows.
const traceLen = 20

// TestDiff applies one seeded random sequence of operations to tmpfs and to
// the subject, in lockstep. After each operation the errno and any data or
// attributes it returned must be equal; every -diff.check operations and at
// the end the whole trees must be equal (see treeState for what is
// compared and what is left out, and why). On the first divergence it
// fails with the seed, the operation index and the last operations, which
// reproduce it.
func TestDiff(t *testing.T) {
	pair := newPair(t)
	seed := *flagDiffSeed
	if seed == 0 {
		seed = time.Now().UnixNano() % 1_000_000_000
	}
	t.Logf("seed %d, %d ops (reproduce: go test ./e2e -run 'TestDiff$' -diff.seed=%d -diff.ops=%d)", seed, *flagDiffOps, seed, *flagDiffOps)
	// About a minute per 20,000 operations; a manual run of millions sets
	// -timeout and gets a proportional deadline.
	pair.deadline(t, time.Duration(*flagDiffOps)*15*time.Millisecond+2*time.Minute)
	refDir, subDir := pair.dirs(t)
	r := newDiffRun(t, seed, refDir, subDir)
	defer r.closeAll()
	start := time.Now()
	for i := 0; i < *flagDiffOps; i++ {
		if !r.step(i) {
			return
		}
		if (i+1)%100000 == 0 {
			t.Logf("%d ops, %.0f ops/s", i+1, float64(i+1)/time.Since(start).Seconds())
		}
		if (i+1)%*flagDiffCheck == 0 && !r.compareTrees(i) {
			return
		}
	}
	r.closeAll()
	if !r.compareTrees(*flagDiffOps) {
		return
	}
	t.Logf("%d ops in %v; outcomes: %s", *flagDiffOps, time.Since(start).Round(time.Millisecond), r.stats())
}

// diffRun is the state of one differential run: the generator and the two
// sides.
type diffRun struct {
	t        *testing.T
	seed     int64
	gen      *generator
	ref, sub *side
	trace    []traceEntry // the last traceLen operations
	errnos   map[string]int
}

type traceEntry struct {
	i        int
	op       string
	ref, sub string
}

func newDiffRun(t *testing.T, seed int64, refDir, subDir string) *diffRun {
	return &diffRun{
		t:      t,
		seed:   seed,
		gen:    newGenerator(seed),
		ref:    newSide(refDir),
		sub:    newSide(subDir),
		errnos: map[string]int{},
	}
}

// step generates and applies operation i; false after a divergence.
func (r *diffRun) step(i int) bool {
	o := r.gen.next()
	a := r.ref.apply(&o)
	b := r.sub.apply(&o)
	r.gen.observe(&o, a)
	r.trace = append(r.trace, traceEntry{i: i, op: o.String(), ref: a.text, sub: b.text})
	if len(r.trace) > traceLen {
		r.trace = r.trace[1:]
	}
	r.errnos[o.kind+" "+errName(a.err)]++
	if a.text != b.text {
		r.fail(i, "the results of operation %d differ", i)
		return false
	}
	return true
}

// compareTrees compares the whole trees after operation i.
func (r *diffRun) compareTrees(i int) bool {
	ta, err := snapshotTree(r.ref.root)
	if err != nil {
		r.fail(i, "walking the tmpfs tree: %v", err)
		return false
	}
	tb, err := snapshotTree(r.sub.root)
	if err != nil {
		r.fail(i, "walking the subject's tree: %v", err)
		return false
	}
	if d := diffTrees(ta, tb, 30); len(d) > 0 {
		r.fail(i, "the trees differ after operation %d:\n  %s", i, strings.Join(d, "\n  "))
		return false
	}
	return true
}

// fail reports a divergence with everything needed to reproduce it.
func (r *diffRun) fail(i int, format string, args ...any) {
	var b strings.Builder
	fmt.Fprintf(&b, "differential test diverged (seed %d, operation %d): %s\n", r.seed, i, fmt.Sprintf(format, args...))
	fmt.Fprintf(&b, "reproduce: go test ./e2e -run 'TestDiff$' -diff.seed=%d -diff.ops=%d -diff.check=%d\n", r.seed, i+1, *flagDiffCheck)
	fmt.Fprintf(&b, "last %d operations (tmpfs | subject):\n", len(r.trace))
	for _, e := range r.trace {
		mark := "  "
		if e.ref != e.sub {
			mark = "! "
		}
		fmt.Fprintf(&b, "%s%6d %-60s -> %s | %s\n", mark, e.i, e.op, e.ref, e.sub)
	}
	r.t.Error(b.String())
}

func (r *diffRun) closeAll() {
	r.ref.closeAll()
	r.sub.closeAll()
}

// stats summarises how often each kind of operation gave each errno, so a
// run shows it exercised successes and failures alike.
func (r *diffRun) stats() string {
	var keys []string
	for k := range r.errnos {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, r.errnos[k])
	}
	return b.String()
}

// numSlots is how many descriptors the model keeps open at most.
const numSlots = 8

// side is one filesystem of the run with its open descriptors.
type side struct {
	root string
	fds  [numSlots]int // -1: slot empty
}

func newSide(root string) *side {
	s := &side{root: root}
	for i := range s.fds {
		s.fds[i] = -1
	}
	return s
}

func (s *side) closeAll() {
	for i, fd := range s.fds {
		if fd >= 0 {
			unix.Close(fd)
			s.fds[i] = -1
		}
	}
}

func (s *side) p(rel string) string { return s.root + "/" + rel }

// outcome is what an operation gave: its error and a rendering of
// everything it returned, which must be equal on both sides.
type outcome struct {
	err  error
	text string
}

func result(err error, format string, args ...any) outcome {
	text := errName(err)
	if err == nil && format != "" {
		text += " " + fmt.Sprintf(format, args...)
	}
	return outcome{err: err, text: text}
}

// apply runs o on this side.
func (s *side) apply(o *diffOp) outcome {
	switch o.kind {
	case "create":
		fd, err := unix.Open(s.p(o.path), o.flags|unix.O_CLOEXEC, o.mode)
		if err == nil {
			err = unix.Close(fd)
		}
		return result(err, "")
	case "open":
		fd, err := unix.Open(s.p(o.path), o.flags|unix.O_CLOEXEC, o.mode)
		if err == nil {
			s.fds[o.slot] = fd
		}
		return result(err, "")
	case "close":
		err := unix.Close(s.fds[o.slot])
		s.fds[o.slot] = -1
		return result(err, "")
	case "pwrite":
		n, err := unix.Pwrite(s.fds[o.slot], opData(o.data, o.size), o.off)
		return result(err, "n=%d", n)
	case "pread":
		return s.pread(o)
	case "ftruncate":
		return result(unix.Ftruncate(s.fds[o.slot], o.off), "")
	case "fstat":
		var st unix.Stat_t
		err := unix.Fstat(s.fds[o.slot], &st)
		return result(err, "%s", statLine(&st))
	case "fsync":
		return result(unix.Fsync(s.fds[o.slot]), "")
	case "fallocate":
		return result(fallocate(s.fds[o.slot], o.mode, o.off, int64(o.size)), "")
	case "write":
		return s.writePath(o)
	case "readfile":
		h, err := hashFile(s.p(o.path))
		return result(err, "sha256=%s", h)
	case "truncate":
		return result(unix.Truncate(s.p(o.path), o.off), "")
	default:
		return s.applyNamespace(o)
	}
}

// applyNamespace runs the operations on names and attributes.
func (s *side) applyNamespace(o *diffOp) outcome {
	switch o.kind {
	case "rename":
		return result(unix.Rename(s.p(o.path), s.p(o.path2)), "")
	case "link":
		return result(unix.Link(s.p(o.path), s.p(o.path2)), "")
	case "unlink":
		return result(unix.Unlink(s.p(o.path)), "")
	case "mkdir":
		return result(unix.Mkdir(s.p(o.path), o.mode), "")
	case "rmdir":
		return result(unix.Rmdir(s.p(o.path)), "")
	case "symlink":
		return result(unix.Symlink(o.path2, s.p(o.path)), "")
	case "mkfifo":
		return result(unix.Mknod(s.p(o.path), unix.S_IFIFO|o.mode, 0), "")
	case "readlink":
		buf := make([]byte, 4096)
		n, err := unix.Readlink(s.p(o.path), buf)
		return result(err, "%q", buf[:max(n, 0)])
	case "chmod":
		return result(unix.Chmod(s.p(o.path), o.mode), "")
	case "chown":
		return result(unix.Lchown(s.p(o.path), o.uid, o.gid), "")
	case "utimens":
		// Explicit times only: their values are comparable.
		ts := []unix.Timespec{{Sec: int64(o.uid), Nsec: int64(o.gid)}, {Sec: o.off, Nsec: int64(o.size)}}
		err := unix.UtimesNanoAt(unix.AT_FDCWD, s.p(o.path), ts, unix.AT_SYMLINK_NOFOLLOW)
		var st unix.Stat_t
		if err == nil {
			err = unix.Lstat(s.p(o.path), &st)
		}
		return result(err, "atime=%d.%09d mtime=%d.%09d", st.Atim.Sec, st.Atim.Nsec, st.Mtim.Sec, st.Mtim.Nsec)
	case "setxattr":
		return result(unix.Lsetxattr(s.p(o.path), o.name, opData(o.data, o.size), o.flags), "")
	case "removexattr":
		return result(unix.Lremovexattr(s.p(o.path), o.name), "")
	case "getxattr":
		buf := make([]byte, o.size)
		n, err := unix.Lgetxattr(s.p(o.path), o.name, buf)
		if o.size == 0 { // the size query
			return result(err, "size=%d", n)
		}
		return result(err, "%s", summary(buf[:max(n, 0)]))
	case "listxattr":
		buf := make([]byte, 4096)
		n, err := unix.Llistxattr(s.p(o.path), buf)
		names := splitNames(buf[:max(n, 0)])
		sort.Strings(names)
		return result(err, "%s", strings.Join(names, ","))
	case "lstat":
		var st unix.Stat_t
		err := unix.Lstat(s.p(o.path), &st)
		return result(err, "%s", statLine(&st))
	case "readdir":
		return s.readdir(o)
	}
	panic("unknown op " + o.kind)
}

func (s *side) pread(o *diffOp) outcome {
	buf := make([]byte, o.size)
	n, err := unix.Pread(s.fds[o.slot], buf, o.off)
	return result(err, "%s", summary(buf[:max(n, 0)]))
}

// writePath opens a path, writes at an offset and closes it.
func (s *side) writePath(o *diffOp) outcome {
	fd, err := unix.Open(s.p(o.path), o.flags|unix.O_CLOEXEC, o.mode)
	if err != nil {
		return result(err, "open")
	}
	n, err := unix.Pwrite(fd, opData(o.data, o.size), o.off)
	cerr := unix.Close(fd)
	if err != nil {
		return result(err, "")
	}
	return result(cerr, "n=%d", n)
}

func (s *side) readdir(o *diffOp) outcome {
	fd, err := unix.Open(s.p(o.path), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return result(err, "")
	}
	defer unix.Close(fd)
	ents, err := readDirFd(fd, 512)
	var names []string
	for _, e := range ents {
		names = append(names, fmt.Sprintf("%s:%d", e.Name, e.Type))
	}
	sort.Strings(names)
	return result(err, "%s", strings.Join(names, " "))
}

// opData is the deterministic content of a write: size bytes from seed;
// every seventh seed writes zeros (which must not be confused with holes).
func opData(seed uint64, size int) []byte {
	b := make([]byte, size)
	if seed%7 == 0 {
		return b
	}
	x := seed | 1
	for i := 0; i < size; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		for j := 0; j < 8 && i+j < size; j++ {
			b[i+j] = byte(x >> (8 * j))
		}
	}
	return b
}

// diffOp is one generated operation; String renders it for the trace.
type diffOp struct {
	kind        string
	path, path2 string
	slot        int
	flags       int
	mode        uint32
	off         int64
	size        int
	data        uint64
	name        string
	uid, gid    int
}

func (o *diffOp) String() string {
	switch o.kind {
	case "open":
		return fmt.Sprintf("open %s %s mode=%04o -> fd%d", o.path, openFlags(o.flags), o.mode, o.slot)
	case "create":
		return fmt.Sprintf("create %s %s mode=%04o", o.path, openFlags(o.flags), o.mode)
	case "close", "fstat", "fsync":
		return fmt.Sprintf("%s fd%d", o.kind, o.slot)
	case "fallocate":
		return fmt.Sprintf("fallocate fd%d mode=%#x off=%d len=%d", o.slot, o.mode, o.off, o.size)
	case "utimens":
		return fmt.Sprintf("utimens %s atime=%d.%09d mtime=%d.%09d", o.path, o.uid, o.gid, o.off, o.size)
	case "pwrite", "pread":
		return fmt.Sprintf("%s fd%d off=%d len=%d data=%d", o.kind, o.slot, o.off, o.size, o.data)
	case "ftruncate":
		return fmt.Sprintf("ftruncate fd%d %d", o.slot, o.off)
	case "write":
		return fmt.Sprintf("write %s %s off=%d len=%d data=%d", o.path, openFlags(o.flags), o.off, o.size, o.data)
	case "truncate":
		return fmt.Sprintf("truncate %s %d", o.path, o.off)
	case "rename", "link":
		return fmt.Sprintf("%s %s %s", o.kind, o.path, o.path2)
	case "symlink":
		return fmt.Sprintf("symlink %s -> %q", o.path, o.path2)
	case "mkdir", "mkfifo", "chmod":
		return fmt.Sprintf("%s %s %04o", o.kind, o.path, o.mode)
	case "chown":
		return fmt.Sprintf("chown %s %d:%d", o.path, o.uid, o.gid)
	case "setxattr":
		return fmt.Sprintf("setxattr %s %s len=%d flags=%d data=%d", o.path, o.name, o.size, o.flags, o.data)
	case "removexattr":
		return fmt.Sprintf("removexattr %s %s", o.path, o.name)
	case "getxattr":
		return fmt.Sprintf("getxattr %s %s buf=%d", o.path, o.name, o.size)
	}
	return o.kind + " " + o.path
}

// generator makes operations over a small name space, so that names
// collide often. It keeps an approximate model of which paths exist
// (updated from the tmpfs outcomes, so it is deterministic for a seed) to
// aim most operations at existing names, and of which slots hold an open
// descriptor.
type generator struct {
	rng   *rand.Rand
	known []string        // paths believed to exist, in a deterministic order
	kind  map[string]byte // 'f' file, 'd' dir, 'l' symlink, 'p' fifo
	open  [numSlots]bool
}

func newGenerator(seed int64) *generator {
	return &generator{rng: rand.New(rand.NewSource(seed)), kind: map[string]byte{}}
}

// names is the name space: four names at up to three levels.
var names = []string{"a", "b", "c", "d"}

// weights of the operation kinds.
var weights = []struct {
	kind string
	w    int
}{
	{"create", 7}, {"open", 8}, {"close", 5}, {"pwrite", 12}, {"pread", 8}, {"ftruncate", 3},
	{"fstat", 3}, {"fsync", 1}, {"write", 6}, {"readfile", 4}, {"truncate", 4}, {"rename", 9},
	{"link", 6}, {"unlink", 6}, {"mkdir", 6}, {"rmdir", 4}, {"symlink", 3}, {"readlink", 1},
	{"mkfifo", 1}, {"chmod", 3}, {"chown", 1}, {"setxattr", 4}, {"removexattr", 2},
	{"getxattr", 2}, {"listxattr", 1}, {"lstat", 4}, {"readdir", 2}, {"fallocate", 2}, {"utimens", 1},
}

var totalWeight = func() int {
	n := 0
	for _, w := range weights {
		n += w.w
	}
	return n
}()

func (g *generator) pickKind() string {
	n := g.rng.Intn(totalWeight)
	for _, w := range weights {
		if n < w.w {
			return w.kind
		}
		n -= w.w
	}
	panic("unreachable")
}

// randomPath is any path of the name space.
func (g *generator) randomPath() string {
	depth := 1 + g.rng.Intn(3)
	parts := make([]string, depth)
	for i := range parts {
		parts[i] = names[g.rng.Intn(len(names))]
	}
	return strings.Join(parts, "/")
}

// existing is usually a path believed to exist, sometimes any path.
func (g *generator) existing() string {
	if len(g.known) == 0 || g.rng.Intn(5) == 0 {
		return g.randomPath()
	}
	return g.known[g.rng.Intn(len(g.known))]
}

// fresh is usually a new name in a directory believed to exist.
func (g *generator) fresh() string {
	if g.rng.Intn(4) == 0 {
		return g.randomPath()
	}
	var dirs []string
	for _, p := range g.known {
		if g.kind[p] == 'd' && strings.Count(p, "/") < 2 {
			dirs = append(dirs, p)
		}
	}
	name := names[g.rng.Intn(len(names))]
	if n := g.rng.Intn(len(dirs) + 1); n < len(dirs) {
		return dirs[n] + "/" + name
	}
	return name
}

func (g *generator) openSlot() (int, bool) {
	var open []int
	for i, o := range g.open {
		if o {
			open = append(open, i)
		}
	}
	if len(open) == 0 {
		return 0, false
	}
	return open[g.rng.Intn(len(open))], true
}

func (g *generator) freeSlot() (int, bool) {
	for i, o := range g.open {
		if !o {
			return i, true
		}
	}
	return 0, false
}

// offset favours the region of existing data, then further out (sparse).
func (g *generator) offset() int64 {
	switch n := g.rng.Intn(10); {
	case n < 5:
		return g.rng.Int63n(96 << 10)
	case n < 8:
		return g.rng.Int63n(256 << 10)
	default:
		return g.rng.Int63n(1 << 20)
	}
}

func (g *generator) size() int {
	if g.rng.Intn(3) == 0 {
		return g.rng.Intn(64<<10) + 1
	}
	return g.rng.Intn(4096) + 1
}

func (g *generator) openFlags() int {
	f := []int{unix.O_RDONLY, unix.O_WRONLY, unix.O_RDWR}[g.rng.Intn(3)] | unix.O_NONBLOCK
	for _, b := range []struct{ bit, oneIn int }{
		{unix.O_CREAT, 2}, {unix.O_TRUNC, 6}, {unix.O_APPEND, 6}, {unix.O_EXCL, 8},
		{unix.O_NOFOLLOW, 12}, {unix.O_DIRECTORY, 20},
	} {
		if g.rng.Intn(b.oneIn) == 0 {
			f |= b.bit
		}
	}
	return f
}

func (g *generator) mode() uint32 {
	if g.rng.Intn(4) == 0 {
		return uint32(g.rng.Intn(0o10000))
	}
	return []uint32{0o644, 0o600, 0o755, 0o4755, 0o2775, 0o1777}[g.rng.Intn(6)]
}

// next generates the next operation.
func (g *generator) next() diffOp {
	o := diffOp{kind: g.pickKind(), data: g.rng.Uint64()}
	switch o.kind {
	case "close", "pwrite", "pread", "ftruncate", "fstat", "fsync", "fallocate":
		slot, ok := g.openSlot()
		if !ok {
			o.kind = "open"
			return g.fill(o)
		}
		o.slot = slot
	case "open":
		slot, ok := g.freeSlot()
		if !ok {
			o.kind = "close"
			o.slot, _ = g.openSlot()
			return o
		}
		o.slot = slot
	}
	return g.fill(o)
}

// fill chooses the arguments of o.
func (g *generator) fill(o diffOp) diffOp {
	switch o.kind {
	case "open":
		o.slot, _ = g.freeSlot()
		o.path, o.flags, o.mode = g.existingOrFresh(), g.openFlags(), g.mode()&0o777
	case "create":
		o.path, o.mode = g.fresh(), g.mode()
		o.flags = unix.O_WRONLY | unix.O_CREAT | unix.O_NONBLOCK
		if g.rng.Intn(3) == 0 {
			o.flags |= unix.O_EXCL
		}
	case "pwrite":
		o.off, o.size = g.offset(), g.size()
	case "pread":
		o.off, o.size = g.offset(), g.size()
	case "fallocate":
		o.off, o.size = g.offset(), g.size()
		o.mode = []uint32{0, unix.FALLOC_FL_KEEP_SIZE, unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE,
			unix.FALLOC_FL_ZERO_RANGE}[g.rng.Intn(4)]
	case "utimens":
		// uid, gid, off and size carry atime and mtime (seconds, ns).
		o.path = g.existing()
		o.uid, o.gid = g.rng.Intn(2_000_000_000), g.rng.Intn(1_000_000_000)
		o.off, o.size = g.rng.Int63n(2_000_000_000), g.rng.Intn(1_000_000_000)
	case "ftruncate", "truncate":
		o.off = g.offset()
		if g.rng.Intn(4) == 0 {
			o.off = g.rng.Int63n(4096)
		}
		if o.kind == "truncate" {
			o.path = g.existing()
		}
	case "write":
		o.path, o.off, o.size = g.existingOrFresh(), g.offset(), g.size()
		o.flags, o.mode = unix.O_WRONLY|unix.O_CREAT|unix.O_NONBLOCK, 0o644
		if g.rng.Intn(4) == 0 {
			o.flags |= unix.O_APPEND
		}
	case "rename", "link":
		o.path = g.existing()
		if g.rng.Intn(4) == 0 || o.kind == "rename" && g.rng.Intn(2) == 0 {
			o.path2 = g.existing()
		} else {
			o.path2 = g.fresh()
		}
	case "mkdir", "mkfifo":
		o.path, o.mode = g.fresh(), g.mode()
	case "symlink":
		o.path = g.fresh()
		// "a" or "a/b": relative and without "..", so it never leaves
		// the directory of the link (and never the test's tree).
		o.path2 = names[g.rng.Intn(len(names))]
		if g.rng.Intn(2) == 0 {
			o.path2 += "/" + names[g.rng.Intn(len(names))]
		}
	case "chmod":
		o.path, o.mode = g.existing(), g.mode()
	case "chown":
		o.path = g.existing()
		o.uid, o.gid = []int{0, 1000, -1}[g.rng.Intn(3)], []int{0, 1000, -1}[g.rng.Intn(3)]
	case "setxattr", "removexattr", "getxattr":
		o.path, o.name = g.existing(), []string{"user.x", "user.y", "user.z"}[g.rng.Intn(3)]
		o.size = g.rng.Intn(40)
		if o.kind == "setxattr" {
			o.flags = []int{0, 0, unix.XATTR_CREATE, unix.XATTR_REPLACE}[g.rng.Intn(4)]
		}
	default: // unlink, rmdir, readlink, readfile, listxattr, lstat, readdir
		o.path = g.existing()
		if o.kind == "readdir" && g.rng.Intn(4) == 0 {
			o.path = "."
		}
	}
	return o
}

func (g *generator) existingOrFresh() string {
	if g.rng.Intn(3) == 0 {
		return g.fresh()
	}
	return g.existing()
}

// observe updates the model from the tmpfs outcome of o.
func (g *generator) observe(o *diffOp, a outcome) {
	switch o.kind {
	case "open":
		g.open[o.slot] = a.err == nil
	case "close":
		g.open[o.slot] = false
	}
	if a.err != nil {
		return
	}
	switch o.kind {
	case "create", "write":
		g.add(o.path, 'f')
	case "open":
		if o.flags&unix.O_CREAT != 0 {
			g.add(o.path, 'f')
		}
	case "mkdir":
		g.add(o.path, 'd')
	case "mkfifo":
		g.add(o.path, 'p')
	case "symlink":
		g.add(o.path, 'l')
	case "link":
		g.add(o.path2, g.kind[o.path])
	case "unlink", "rmdir":
		g.removeTree(o.path)
	case "rename":
		g.rename(o.path, o.path2)
	}
}

func (g *generator) add(p string, k byte) {
	if _, ok := g.kind[p]; !ok {
		g.known = append(g.known, p)
	}
	g.kind[p] = k
}

// removeTree forgets p and everything below it.
func (g *generator) removeTree(p string) {
	kept := g.known[:0]
	for _, q := range g.known {
		if q == p || strings.HasPrefix(q, p+"/") {
			delete(g.kind, q)
			continue
		}
		kept = append(kept, q)
	}
	g.known = kept
}

// rename moves p and everything below it to q (replacing q).
func (g *generator) rename(p, q string) {
	if p == q {
		return
	}
	var moved []string
	var kinds []byte
	for _, x := range g.known {
		if x == p || strings.HasPrefix(x, p+"/") {
			moved = append(moved, q+x[len(p):])
			kinds = append(kinds, g.kind[x])
		}
	}
	g.removeTree(p)
	g.removeTree(q)
	for i, x := range moved {
		g.add(x, kinds[i])
	}
}
