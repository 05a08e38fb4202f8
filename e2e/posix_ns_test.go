package e2e

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// TestPOSIXNamespace runs the namespace cases of issue 2 (mknod, mkdir,
// symlink, link, rename, name length, readdir) on tmpfs and on the subject
// and compares what they observe.
func TestPOSIXNamespace(t *testing.T) {
	pair := newPair(t)
	pair.deadline(t, defaultDeadline)
	runScenarios(t, pair, []scenario{
		{"mknod", scMknod},
		{"mkdir-rmdir", scMkdirRmdir},
		{"symlink-readlink", scSymlink},
		{"link-across-dirs", scLink},
		{"rename", scRename},
		{"rename-dirs", scRenameDirs},
		{"name-too-long", scNameTooLong},
		{"readdir", scReaddir},
	})
}

func scMknod(p *probe) {
	p.check("mknod fifo", unix.Mknod(p.P("p"), unix.S_IFIFO|0o640, 0))
	p.lstat("p")
	fd := p.open("p", unix.O_RDWR|unix.O_NONBLOCK, 0)
	_, err := unix.Write(fd, []byte("through the pipe"))
	p.check("write fifo", err)
	buf := make([]byte, 64)
	n, err := unix.Read(fd, buf)
	p.note("read fifo: %q %s", buf[:max(n, 0)], errName(err))
	p.pwrite("fifo", fd, []byte("x"), 0)
	p.close("fifo", fd)
	p.lstat("p")
	p.check("mknod chr 1:3", unix.Mknod(p.P("c"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))))
	p.lstat("c")
	p.open("c", unix.O_RDONLY, 0) // nodev mount: EACCES on both
	p.check("mknod blk 7:200", unix.Mknod(p.P("b"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 200))))
	p.lstat("b")
	p.check("mknod chr big numbers", unix.Mknod(p.P("c2"), unix.S_IFCHR|0o600, int(unix.Mkdev(4000, 1<<19))))
	p.lstat("c2")
	p.check("mknod reg", unix.Mknod(p.P("r"), unix.S_IFREG|0o600, 0))
	p.lstat("r")
	p.check("mknod sock", unix.Mknod(p.P("s"), unix.S_IFSOCK|0o600, 0))
	p.lstat("s")
	p.check("mknod existing", unix.Mknod(p.P("p"), unix.S_IFIFO|0o600, 0))
	p.check("mknod dir type", unix.Mknod(p.P("dd"), unix.S_IFDIR|0o600, 0))
	p.check("mknod in missing dir", unix.Mknod(p.P("missing/p"), unix.S_IFIFO|0o600, 0))
	p.check("chmod chr", unix.Chmod(p.P("c"), 0o644))
	p.lstat("c")
	p.check("rename chr", unix.Rename(p.P("c"), p.P("c3")))
	p.lstat("c3")
}

func scMkdirRmdir(p *probe) {
	p.check("mkdir d", unix.Mkdir(p.P("d"), 0o750))
	p.check("mkdir d again", unix.Mkdir(p.P("d"), 0o750))
	p.check("mkdir d/e", unix.Mkdir(p.P("d/e"), 0o755))
	p.check("mkdir d/e/f", unix.Mkdir(p.P("d/e/f"), 0o755))
	p.lstat("d")
	p.lstat("d/e")
	p.check("rmdir d", unix.Rmdir(p.P("d")))
	p.check("rmdir d/e", unix.Rmdir(p.P("d/e")))
	p.check("rmdir d/e/f", unix.Rmdir(p.P("d/e/f")))
	p.lstat("d/e")
	p.check("rmdir d/e", unix.Rmdir(p.P("d/e")))
	p.lstat("d")
	p.check("rmdir d/.", unix.Rmdir(p.P("d/.")))
	p.check("rmdir d/..", unix.Rmdir(p.P("d/..")))
	p.writeFile("d/file", []byte("x"))
	p.check("rmdir file", unix.Rmdir(p.P("d/file")))
	p.check("rmdir d with a file", unix.Rmdir(p.P("d")))
	p.check("unlink d/file", unix.Unlink(p.P("d/file")))
	p.check("rmdir d", unix.Rmdir(p.P("d")))
	p.lstat("d")
	p.check("rmdir missing", unix.Rmdir(p.P("d")))
	p.check("mkdir in missing", unix.Mkdir(p.P("x/y"), 0o755))
	p.writeFile("f", nil)
	p.check("mkdir under file", unix.Mkdir(p.P("f/y"), 0o755))
	p.check("mkdir with trailing slash", unix.Mkdir(p.P("t")+"/", 0o755))
	p.lstat("t")
	// An open directory that is removed: getdents then says ENOENT.
	p.check("mkdir o", unix.Mkdir(p.P("o"), 0o755))
	fd := p.open("o", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	p.check("rmdir o while open", unix.Rmdir(p.P("o")))
	p.fstat("o", fd)
	_, err := unix.Getdents(fd, make([]byte, 4096))
	p.check("getdents removed dir", err)
	p.check("mkdirat in removed dir", unix.Mkdirat(fd, "x", 0o755))
	p.close("o", fd)
}

func scSymlink(p *probe) {
	readlink := func(rel string) {
		buf := make([]byte, 8192)
		n, err := unix.Readlink(p.P(rel), buf)
		if err != nil {
			p.note("readlink %s: %s", rel, errName(err))
			return
		}
		p.note("readlink %s: %s", rel, summary(buf[:n]))
	}
	p.check("symlink l", unix.Symlink("target/x", p.P("l")))
	p.lstat("l")
	readlink("l")
	p.stat("l")
	long := strings.Repeat("abcdefgh/", 455) // 4095 bytes
	p.check("symlink 4095-byte target", unix.Symlink(long, p.P("long")))
	p.lstat("long")
	readlink("long")
	p.check("symlink 4096-byte target", unix.Symlink(long+"x", p.P("toolong")))
	p.check("symlink empty target", unix.Symlink("", p.P("empty")))
	p.writeFile("f", []byte("via link"))
	readlink("f")
	readlink("missing")
	p.check("symlink existing name", unix.Symlink("x", p.P("f")))
	p.check("symlink f2 -> f", unix.Symlink("f", p.P("f2")))
	p.readFile("f2")
	p.stat("f2")
	p.check("mkdir d", unix.Mkdir(p.P("d"), 0o755))
	p.check("symlink d/up -> ../f", unix.Symlink("../f", p.P("d/up")))
	p.readFile("d/up")
	p.check("symlink loop a->b", unix.Symlink("b", p.P("a")))
	p.check("symlink loop b->a", unix.Symlink("a", p.P("b")))
	p.stat("a")
	p.check("symlink dirlink -> d", unix.Symlink("d", p.P("dirlink")))
	p.writeFile("dirlink/through", []byte("x"))
	p.lstat("d/through")
	p.check("rmdir symlink to dir", unix.Rmdir(p.P("dirlink")))
	p.check("unlink symlink", unix.Unlink(p.P("dirlink")))
	p.lstat("d")
	p.check("chmod through symlink", unix.Chmod(p.P("f2"), 0o600))
	p.lstat("f")
	p.lstat("f2")
}

// sameInode records whether a and b name the same inode.
func (p *probe) sameInode(a, b string) {
	var sa, sb unix.Stat_t
	ea, eb := unix.Lstat(p.P(a), &sa), unix.Lstat(p.P(b), &sb)
	p.note("same inode %s %s: %v (%s %s)", a, b, ea == nil && eb == nil && sa.Ino == sb.Ino, errName(ea), errName(eb))
}

func scLink(p *probe) {
	for _, d := range []string{"a", "b", "c"} {
		p.check("mkdir "+d, unix.Mkdir(p.P(d), 0o755))
	}
	p.writeFile("a/f", []byte("shared"))
	p.check("link a/f b/g", unix.Link(p.P("a/f"), p.P("b/g")))
	p.lstat("a/f")
	p.lstat("b/g")
	p.sameInode("a/f", "b/g")
	p.check("link b/g c/h", unix.Link(p.P("b/g"), p.P("c/h")))
	p.lstat("a/f")
	p.check("unlink a/f", unix.Unlink(p.P("a/f")))
	p.lstat("b/g")
	p.readFile("c/h")
	p.writeFile("c/h", []byte("rewritten through c/h"))
	p.readFile("b/g")
	p.check("chmod b/g", unix.Chmod(p.P("b/g"), 0o600))
	p.lstat("c/h")
	p.check("link dir", unix.Link(p.P("a"), p.P("a2")))
	p.check("link onto existing", unix.Link(p.P("b/g"), p.P("c/h")))
	p.check("link missing", unix.Link(p.P("a/f"), p.P("a/f2")))
	p.check("link into missing dir", unix.Link(p.P("b/g"), p.P("x/y")))
	p.check("symlink s", unix.Symlink("b/g", p.P("s")))
	p.check("link to symlink", unix.Link(p.P("s"), p.P("s2")))
	p.lstat("s2")
	p.sameInode("s", "s2")
	p.check("mkfifo p", unix.Mkfifo(p.P("p"), 0o644))
	p.check("link fifo", unix.Link(p.P("p"), p.P("a/p")))
	p.lstat("p")
	p.check("rename b/g over c/h (same inode)", unix.Rename(p.P("b/g"), p.P("c/h")))
	p.lstat("b/g")
	p.lstat("c/h")
	p.check("unlink b/g", unix.Unlink(p.P("b/g")))
	p.lstat("c/h")
	for _, d := range []string{"a", "b", "c"} {
		p.lstat(d)
	}
}

func scRename(p *probe) {
	p.writeFile("a", []byte("A"))
	p.writeFile("b", []byte("BB"))
	p.check("rename a b (over file)", unix.Rename(p.P("a"), p.P("b")))
	p.lstat("a")
	p.readFile("b")
	p.check("rename b b (same name)", unix.Rename(p.P("b"), p.P("b")))
	p.readFile("b")
	p.check("rename missing", unix.Rename(p.P("a"), p.P("c")))
	p.writeFile("x", []byte("x"))
	p.check("link x y", unix.Link(p.P("x"), p.P("y")))
	p.writeFile("t", []byte("target"))
	p.check("link t t2", unix.Link(p.P("t"), p.P("t2")))
	p.check("rename x over t (target has 2 links)", unix.Rename(p.P("x"), p.P("t")))
	p.lstat("t2")
	p.lstat("t")
	p.lstat("y")
	p.check("rename y t (same inode: no-op)", unix.Rename(p.P("y"), p.P("t")))
	p.lstat("y")
	p.lstat("t")
	p.check("mkdir d", unix.Mkdir(p.P("d"), 0o755))
	p.check("rename file over dir", unix.Rename(p.P("b"), p.P("d")))
	p.check("rename dir over file", unix.Rename(p.P("d"), p.P("b")))
	p.check("rename into missing dir", unix.Rename(p.P("b"), p.P("nodir/b")))
	p.check("rename under a file", unix.Rename(p.P("b"), p.P("t/b")))
	p.check("rename . away", unix.Rename(p.P("d/."), p.P("e")))
	p.check("rename onto ..", unix.Rename(p.P("b"), p.P("d/..")))
	p.check("rename b d/b", unix.Rename(p.P("b"), p.P("d/b")))
	p.readFile("d/b")
	p.check("symlink s -> d", unix.Symlink("d", p.P("s")))
	p.check("rename symlink", unix.Rename(p.P("s"), p.P("s2")))
	p.lstat("s2")
	p.readFile("s2/b")
	p.check("rename over symlink", unix.Rename(p.P("d/b"), p.P("s2")))
	p.lstat("s2")
	p.lstat("d")
}

func scRenameDirs(p *probe) {
	for _, d := range []string{"a", "a/sub", "a/sub/deep", "empty", "full", "full/x"} {
		p.check("mkdir "+d, unix.Mkdir(p.P(d), 0o755))
	}
	p.writeFile("a/sub/file", []byte("moved with its dir"))
	p.check("rename a over empty dir", unix.Rename(p.P("a"), p.P("empty")))
	p.lstat("a")
	p.lstat("empty")
	p.readFile("empty/sub/file")
	p.check("rename onto non-empty dir", unix.Rename(p.P("empty"), p.P("full")))
	p.check("rename dir into own subdir", unix.Rename(p.P("empty"), p.P("empty/sub/deep/x")))
	p.check("rename dir onto own subdir", unix.Rename(p.P("empty"), p.P("empty/sub")))
	p.check("rename subdir onto its ancestor", unix.Rename(p.P("empty/sub/deep"), p.P("empty")))
	p.check("rename dir across parents", unix.Rename(p.P("empty/sub"), p.P("full/sub")))
	p.lstat("empty")
	p.lstat("full")
	p.lstat("full/sub")
	p.readFile("full/sub/file")
	p.check("rename dir to same name", unix.Rename(p.P("full"), p.P("full")))
	p.check("rename empty dir over empty dir", unix.Rename(p.P("full/x"), p.P("full/sub/deep")))
	p.lstat("full")
	p.lstat("full/sub")
	p.check("rename dir with trailing slash", unix.Rename(p.P("full/sub")+"/", p.P("moved")+"/"))
	p.lstat("moved")
	p.check("rename file with trailing slash", unix.Rename(p.P("moved/file")+"/", p.P("f2")))
	p.check("rename dir with open fd", unix.Rename(p.P("moved"), p.P("moved2")))
	p.readFile("moved2/file")
	p.lstat(".")
}

func scNameTooLong(p *probe) {
	n255 := strings.Repeat("n", 255)
	n256 := strings.Repeat("m", 256)
	p.writeFile(n255, []byte("255 is allowed"))
	p.lstat(n255)
	p.open(n256, unix.O_WRONLY|unix.O_CREAT, 0o644)
	p.lstat(n256)
	p.check("mkdir 256", unix.Mkdir(p.P(n256), 0o755))
	p.check("mkdir 255", unix.Mkdir(p.P("d"+n255[1:]), 0o755))
	p.check("symlink name 256", unix.Symlink("x", p.P(n256)))
	p.check("link to 256", unix.Link(p.P(n255), p.P(n256)))
	p.check("rename to 256", unix.Rename(p.P(n255), p.P(n256)))
	p.check("mknod 256", unix.Mknod(p.P(n256), unix.S_IFIFO|0o644, 0))
	p.check("unlink 256", unix.Unlink(p.P(n256)))
	p.check("rmdir 256", unix.Rmdir(p.P(n256)))
	p.check("rename 255 to other 255", unix.Rename(p.P(n255), p.P("r"+n255[1:])))
	p.lstat("r" + n255[1:])
}

// dirent is one entry returned by getdents64.
type dirent struct {
	Ino  uint64
	Off  int64
	Type uint8
	Name string
}

// parseDirents decodes a getdents64 buffer.
func parseDirents(buf []byte) []dirent {
	var out []dirent
	for len(buf) >= 19 {
		reclen := int(buf[16]) | int(buf[17])<<8
		if reclen < 19 || reclen > len(buf) {
			break
		}
		name := buf[19:reclen]
		if i := strings.IndexByte(string(name), 0); i >= 0 {
			name = name[:i]
		}
		out = append(out, dirent{
			Ino:  leUint64(buf[0:8]),
			Off:  int64(leUint64(buf[8:16])),
			Type: buf[18],
			Name: string(name),
		})
		buf = buf[reclen:]
	}
	return out
}

func leUint64(b []byte) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

// readDirFd reads a whole directory through fd with getdents buffers of
// bufSize bytes (small buffers make several calls, so offsets are used).
func readDirFd(fd, bufSize int) ([]dirent, error) {
	var all []dirent
	buf := make([]byte, bufSize)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return all, err
		}
		if n == 0 {
			return all, nil
		}
		all = append(all, parseDirents(buf[:n])...)
	}
}

// readdir records the sorted (name, type) list of rel and whether . and ..
// carry the right inode numbers.
func (p *probe) readdir(rel string, bufSize int) {
	fd, err := unix.Open(p.P(rel), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		p.check("opendir "+rel, err)
		return
	}
	defer unix.Close(fd)
	ents, err := readDirFd(fd, bufSize)
	var names []string
	for _, e := range ents {
		names = append(names, fmt.Sprintf("%s:%d", e.Name, e.Type))
	}
	sort.Strings(names)
	p.note("readdir %s [buf %d]: %s %s", rel, bufSize, strings.Join(names, " "), errName(err))
	var self, parent unix.Stat_t
	_ = unix.Stat(p.P(rel), &self)
	_ = unix.Stat(p.P(rel)+"/..", &parent)
	for _, e := range ents {
		switch e.Name {
		case ".":
			p.note("readdir %s: . is itself: %v", rel, e.Ino == self.Ino)
		case "..":
			p.note("readdir %s: .. is the parent: %v", rel, e.Ino == parent.Ino)
		}
	}
}

func scReaddir(p *probe) {
	p.check("mkdir d", unix.Mkdir(p.P("d"), 0o755))
	p.readdir("d", 4096)
	for i := 0; i < 40; i++ {
		p.writeFile(fmt.Sprintf("d/file-%02d-%s", i, strings.Repeat("x", i)), nil)
	}
	p.check("mkdir d/sub", unix.Mkdir(p.P("d/sub"), 0o755))
	p.check("symlink d/l", unix.Symlink("x", p.P("d/l")))
	p.check("mkfifo d/p", unix.Mkfifo(p.P("d/p"), 0o644))
	p.readdir("d", 4096)
	p.readdir("d", 100)
	p.readdir("d/sub", 4096)
	p.readdir(".", 4096)
	// Rewind: a second pass over the same descriptor gives the same list.
	fd := p.open("d", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	first, err1 := readDirFd(fd, 512)
	_, err := unix.Seek(fd, 0, 0)
	p.check("rewinddir", err)
	second, err2 := readDirFd(fd, 512)
	p.note("rewind gives the same %d entries: %v (%s %s)", len(first), sameNames(first, second), errName(err1), errName(err2))
	// seekdir: going back to the cookie (d_off) of an entry continues
	// right after that entry, also after a name before it was removed.
	if len(first) > 10 {
		cookie := first[9].Off
		_, err := unix.Seek(fd, cookie, 0)
		rest, err2 := readDirFd(fd, 512)
		p.note("seek to the 10th cookie gives the rest: %v (%s %s)", sameNames(rest, first[10:]), errName(err), errName(err2))
		p.check("unlink an earlier entry", unix.Unlink(p.P("d/"+firstFile(first[:9]))))
		_, err = unix.Seek(fd, cookie, 0)
		rest, err2 = readDirFd(fd, 512)
		p.note("after unlinking an earlier name, the same rest: %v (%s %s)", sameNames(rest, first[10:]), errName(err), errName(err2))
	}
	p.close("d", fd)
	p.check("getdents on a file", func() error {
		p.writeFile("f", nil)
		fd, err := unix.Open(p.P("f"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		_, err = unix.Getdents(fd, make([]byte, 4096))
		return err
	}())
}

// firstFile returns the first regular file's name among ents.
func firstFile(ents []dirent) string {
	for _, e := range ents {
		if e.Type == unix.DT_REG {
			return e.Name
		}
	}
	return "none"
}

func sameNames(a, b []dirent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name {
			return false
		}
	}
	return true
}

// TestStatfs checks the subject's statfs on its own terms: totals are
// non-zero and consistent, writing 10 MiB takes free blocks, creating files
// takes free inodes, and deleting gives them back.
func TestStatfs(t *testing.T) {
	pair := newPair(t)
	pair.deadline(t, defaultDeadline)
	_, dir := pair.dirs(t)
	st0 := mustStatfs(t, dir)
	if st0.Blocks == 0 || st0.Bsize == 0 || st0.Files == 0 {
		t.Fatalf("statfs totals are zero: %+v", st0)
	}
	if st0.Bfree > st0.Blocks || st0.Bavail > st0.Bfree || st0.Ffree > st0.Files {
		t.Fatalf("statfs inconsistent: %+v", st0)
	}
	if st0.Namelen != 255 {
		t.Errorf("statfs namelen = %d, want 255", st0.Namelen)
	}
	data := make([]byte, 10<<20)
	for i := range data {
		data[i] = byte(i)
	}
	if err := writeSync(dir+"/big", data); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if err := mkfile(fmt.Sprintf("%s/empty-%d", dir, i)); err != nil {
			t.Fatal(err)
		}
	}
	st1 := mustStatfs(t, dir)
	used := int64(st0.Bfree-st1.Bfree) * st1.Bsize
	if st1.Bfree >= st0.Bfree || used < 9<<20 {
		t.Errorf("bfree %d -> %d (bsize %d) after writing 10 MiB: %d bytes taken", st0.Bfree, st1.Bfree, st1.Bsize, used)
	}
	if st0.Ffree-st1.Ffree < 100 {
		t.Errorf("ffree %d -> %d after creating 101 files", st0.Ffree, st1.Ffree)
	}
	if st1.Blocks != st0.Blocks || st1.Files != st0.Files {
		t.Errorf("totals changed: blocks %d -> %d, files %d -> %d", st0.Blocks, st1.Blocks, st0.Files, st1.Files)
	}
	if err := unix.Unlink(dir + "/big"); err != nil {
		t.Fatal(err)
	}
	// The kernel may hold the unlinked inode until it forgets it: wait for
	// the space to come back, with a deadline.
	testsupport.WaitFor(t, waitDeadline, "10 MiB to be freed after unlink", func() bool {
		return mustStatfs(t, dir).Bfree > st1.Bfree+(8<<20)/uint64(st1.Bsize)
	})
}

func mustStatfs(t testing.TB, dir string) unix.Statfs_t {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatalf("statfs %s: %v", dir, err)
	}
	return st
}

func writeSync(path string, data []byte) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	for off := 0; off < len(data); {
		n, err := unix.Write(fd, data[off:])
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("write %s: %w", path, err)
		}
		off += n
	}
	if err := unix.Fsync(fd); err != nil {
		unix.Close(fd)
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}
