package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// probe runs one scenario on one filesystem and records what it observes,
// one line per observation. The same scenario is run on tmpfs and on the
// subject and the two transcripts are compared: tmpfs is the spec. A
// scenario records only what must be equal on both (errnos, modes, sizes,
// contents, which times changed), never inode numbers or time values.
type probe struct {
	t     testing.TB
	root  string
	lines []string
	fds   map[int]bool // descriptors opened by open and not yet closed
}

// closeAll closes what the scenario left open. Only descriptors the probe
// still owns: closing a number twice could hit a descriptor that was
// reused since, such as the pipe carrying spoolfs's output.
func (p *probe) closeAll() {
	for fd := range p.fds {
		unix.Close(fd)
	}
	p.fds = nil
}

// P returns the absolute path of rel inside the scenario's directory. It
// does not clean the path: "d/..", "d/." and trailing slashes reach the
// filesystem as written.
func (p *probe) P(rel string) string {
	if rel == "" {
		return p.root
	}
	return p.root + "/" + rel
}

// note records one observation.
func (p *probe) note(format string, args ...any) {
	p.lines = append(p.lines, fmt.Sprintf(format, args...))
}

// knownPrefix marks observations of known, documented limitations of the
// subject (each call site says which and why). They are compared only
// with -e2e.strict; otherwise a difference there is logged, not failed.
const knownPrefix = "known limitation: "

var flagStrict = flag.Bool("e2e.strict", false, "also fail on the known, documented limitations of the subject")

// known records an observation that differs on the subject for a known
// reason that spoolfs cannot or chose not to change.
func (p *probe) known(format string, args ...any) {
	p.note(knownPrefix+format, args...)
}

// check records the errno of an operation and says whether it succeeded.
func (p *probe) check(what string, err error) bool {
	p.note("%s: %s", what, errName(err))
	return err == nil
}

// fileType names the type bits of a mode.
func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "reg"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "lnk"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFCHR:
		return "chr"
	case unix.S_IFBLK:
		return "blk"
	case unix.S_IFSOCK:
		return "sock"
	}
	return fmt.Sprintf("type%o", mode&unix.S_IFMT)
}

// statLine renders the comparable part of a stat. Directory sizes are left
// out: they are the filesystem's own convention (tmpfs counts 20 bytes per
// entry) and POSIX leaves them unspecified.
func statLine(st *unix.Stat_t) string {
	s := fmt.Sprintf("%s perm=%04o nlink=%d uid=%d gid=%d", fileType(st.Mode), st.Mode&0o7777, st.Nlink, st.Uid, st.Gid)
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		s += fmt.Sprintf(" size=%d", st.Size)
	}
	if t := st.Mode & unix.S_IFMT; t == unix.S_IFCHR || t == unix.S_IFBLK {
		s += fmt.Sprintf(" rdev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	return s
}

// lstat records the attributes of rel (not following a final symlink).
func (p *probe) lstat(rel string) (unix.Stat_t, bool) {
	var st unix.Stat_t
	err := unix.Lstat(p.P(rel), &st)
	if err != nil {
		p.note("lstat %s: %s", rel, errName(err))
		return st, false
	}
	p.note("lstat %s: %s", rel, statLine(&st))
	return st, true
}

// stat records the attributes of rel, following symlinks.
func (p *probe) stat(rel string) (unix.Stat_t, bool) {
	var st unix.Stat_t
	err := unix.Stat(p.P(rel), &st)
	if err != nil {
		p.note("stat %s: %s", rel, errName(err))
		return st, false
	}
	p.note("stat %s: %s", rel, statLine(&st))
	return st, true
}

// fstat records the attributes of an open descriptor.
func (p *probe) fstat(what string, fd int) (unix.Stat_t, bool) {
	var st unix.Stat_t
	err := unix.Fstat(fd, &st)
	if err != nil {
		p.note("fstat %s: %s", what, errName(err))
		return st, false
	}
	p.note("fstat %s: %s", what, statLine(&st))
	return st, true
}

// open opens rel and records the errno; -1 when it failed.
func (p *probe) open(rel string, flags int, perm uint32) int {
	fd, err := unix.Open(p.P(rel), flags|unix.O_CLOEXEC, perm)
	p.check(fmt.Sprintf("open %s %s", rel, openFlags(flags)), err)
	if err != nil {
		return -1
	}
	if p.fds == nil {
		p.fds = map[int]bool{}
	}
	p.fds[fd] = true
	return fd
}

// close closes fd and records the errno (close must return 0).
func (p *probe) close(what string, fd int) {
	if fd < 0 {
		p.note("close %s: not open", what)
		return
	}
	if !p.fds[fd] {
		p.t.Fatalf("close %s: descriptor %d is not open in this scenario", what, fd)
	}
	delete(p.fds, fd)
	p.check("close "+what, unix.Close(fd))
}

// openFlags renders the interesting bits of open flags.
func openFlags(f int) string {
	var s []string
	switch f & unix.O_ACCMODE {
	case unix.O_RDONLY:
		s = append(s, "RDONLY")
	case unix.O_WRONLY:
		s = append(s, "WRONLY")
	case unix.O_RDWR:
		s = append(s, "RDWR")
	}
	for _, b := range []struct {
		bit  int
		name string
	}{{unix.O_CREAT, "CREAT"}, {unix.O_EXCL, "EXCL"}, {unix.O_TRUNC, "TRUNC"}, {unix.O_APPEND, "APPEND"},
		{unix.O_NONBLOCK, "NONBLOCK"}, {unix.O_NOFOLLOW, "NOFOLLOW"}, {unix.O_DIRECTORY, "DIRECTORY"}} {
		if f&b.bit != 0 {
			s = append(s, b.name)
		}
	}
	return strings.Join(s, "|")
}

// writeFile creates or truncates rel with data (perm 0644) and records it.
func (p *probe) writeFile(rel string, data []byte) bool {
	fd, err := unix.Open(p.P(rel), unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
	if err != nil {
		p.check("write-file "+rel, err)
		return false
	}
	n, err := unix.Write(fd, data)
	cerr := unix.Close(fd)
	if err == nil && n != len(data) {
		err = fmt.Errorf("short write %d of %d", n, len(data))
	}
	if err == nil {
		err = cerr
	}
	return p.check(fmt.Sprintf("write-file %s (%d bytes)", rel, len(data)), err)
}

// pwrite writes at off through fd and records the count.
func (p *probe) pwrite(what string, fd int, data []byte, off int64) {
	n, err := unix.Pwrite(fd, data, off)
	p.note("pwrite %s %d@%d: n=%d %s", what, len(data), off, n, errName(err))
}

// pread reads n bytes at off through fd and records what came back.
func (p *probe) pread(what string, fd int, n int, off int64) []byte {
	buf := make([]byte, n)
	got, err := unix.Pread(fd, buf, off)
	if err != nil {
		p.note("pread %s %d@%d: %s", what, n, off, errName(err))
		return nil
	}
	p.note("pread %s %d@%d: %s", what, n, off, summary(buf[:got]))
	return buf[:got]
}

// readFile reads the whole content of rel and records a summary.
func (p *probe) readFile(rel string) []byte {
	fd, err := unix.Open(p.P(rel), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		p.check("read-file "+rel, err)
		return nil
	}
	defer unix.Close(fd)
	var out []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			p.check("read-file "+rel, err)
			return nil
		}
		if n == 0 {
			break
		}
		out = append(out, buf[:n]...)
	}
	p.note("read-file %s: %s", rel, summary(out))
	return out
}

// summary renders data briefly: short data literally, long data by length,
// zero count and hash.
func summary(b []byte) string {
	if len(b) <= 64 {
		return fmt.Sprintf("%d bytes %q", len(b), b)
	}
	zeros := 0
	for _, c := range b {
		if c == 0 {
			zeros++
		}
	}
	h := sha256.Sum256(b)
	return fmt.Sprintf("%d bytes (%d zero) sha256=%s", len(b), zeros, hex.EncodeToString(h[:8]))
}

// stamps are the times of one file.
type stamps struct {
	ok           bool
	atime, mtime unix.Timespec
	ctime        unix.Timespec
}

func lstamps(path string) stamps {
	var st unix.Stat_t
	if unix.Lstat(path, &st) != nil {
		return stamps{}
	}
	return stamps{ok: true, atime: st.Atim, mtime: st.Mtim, ctime: st.Ctim}
}

// timesChanged runs op and records which of mtime and ctime of each of rels
// changed (the set, not the values). Before op it waits until the coarse
// clock has passed every time it read, so any update is visible as a
// change. atime is not compared: it depends on the atime mount option
// (relatime) and FUSE leaves it to the server; utimensat cases check it.
func (p *probe) timesChanged(label string, rels []string, op func() error) {
	before := make([]stamps, len(rels))
	var latest int64
	for i, r := range rels {
		before[i] = lstamps(p.P(r))
		for _, ts := range []unix.Timespec{before[i].mtime, before[i].ctime} {
			latest = max(latest, ts.Nano())
		}
	}
	waitClockPast(p.t, latest)
	err := op()
	var changed []string
	for i, r := range rels {
		after := lstamps(p.P(r))
		switch {
		case !before[i].ok || !after.ok:
			changed = append(changed, fmt.Sprintf("%s(exists %v->%v)", r, before[i].ok, after.ok))
		default:
			if after.mtime != before[i].mtime {
				changed = append(changed, r+".mtime")
			}
			if after.ctime != before[i].ctime {
				changed = append(changed, r+".ctime")
			}
		}
	}
	p.note("times %s: %s changed=[%s]", label, errName(err), strings.Join(changed, " "))
}

// waitClockPast waits (with a deadline) until the coarse real-time clock,
// which the kernel stamps files with, is past ns.
func waitClockPast(t testing.TB, ns int64) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_REALTIME_COARSE, &ts); err != nil {
			t.Fatalf("clock_gettime: %v", err)
		}
		if ts.Nano() > ns {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the coarse clock did not pass a file time of %d ns within 5s", ns)
		}
		time.Sleep(time.Millisecond)
	}
}

var flagDump = flag.Bool("e2e.dump", false, "log the tmpfs transcript of every POSIX case")

// scenario is one POSIX case: it runs on both filesystems.
type scenario struct {
	name string
	run  func(p *probe)
}

// runScenarios runs each scenario as a subtest on a fresh directory of
// each side and compares the transcripts.
func runScenarios(t *testing.T, pair *fsPair, cases []scenario) {
	for _, sc := range cases {
		t.Run(sc.name, func(t *testing.T) {
			refDir, subDir := pair.dirs(t)
			ref := &probe{t: t, root: refDir}
			defer ref.closeAll()
			sc.run(ref)
			sub := &probe{t: t, root: subDir}
			defer sub.closeAll()
			sc.run(sub)
			if *flagDump {
				t.Logf("tmpfs transcript:\n%s", strings.Join(ref.lines, "\n"))
			}
			compareTranscripts(t, ref.lines, sub.lines)
		})
	}
}

// compareTranscripts fails with every differing observation (up to ten),
// each in context. Scenarios record one line per step on both sides, so
// the transcripts stay aligned after a difference.
func compareTranscripts(t testing.TB, ref, sub []string) {
	t.Helper()
	n := max(len(ref), len(sub))
	var out strings.Builder
	shown, diffs := -1, 0
	for i := 0; i < n; i++ {
		if lineAt(ref, i) == lineAt(sub, i) {
			continue
		}
		if !*flagStrict && strings.HasPrefix(lineAt(ref, i), knownPrefix) && strings.HasPrefix(lineAt(sub, i), knownPrefix) {
			t.Logf("%s (not failed without -e2e.strict):\n  tmpfs:   %s\n  subject: %s", strings.TrimSuffix(knownPrefix, ": "),
				strings.TrimPrefix(lineAt(ref, i), knownPrefix), strings.TrimPrefix(lineAt(sub, i), knownPrefix))
			continue
		}
		diffs++
		if diffs > 10 {
			continue
		}
		for j := max(shown+1, i-3); j < min(n, i+3); j++ {
			mark := "  "
			if lineAt(ref, j) != lineAt(sub, j) {
				mark = "! "
			}
			fmt.Fprintf(&out, "%s%3d tmpfs:   %s\n%s    subject: %s\n", mark, j, lineAt(ref, j), mark, lineAt(sub, j))
			shown = j
		}
		out.WriteString("    ...\n")
	}
	if diffs > 0 {
		t.Errorf("the subject differs from tmpfs in %d of %d observations:\n%s", diffs, n, out.String())
	}
}

func lineAt(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "<none>"
}
