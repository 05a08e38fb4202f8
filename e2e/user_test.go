package e2e

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Cases run by another user than root: permission checks by the kernel
// (default_permissions), ownership from the caller, and the clearing of
// setuid/setgid bits on write, truncate and chmod by an unprivileged user.
// The other user is a copy of this test binary run with a changed uid/gid
// (see childMain); the subject is mounted with -o allow_other so that user
// may use it at all.

// childEnv carries the operations for a child process, one per line,
// fields separated by tabs.
const childEnv = "SPOOLFS_E2E_CHILD_OPS"

// childMain runs in the child process instead of the tests: it applies
// each operation and prints its errno name, one line per operation.
func childMain(ops string) {
	for _, line := range strings.Split(ops, "\n") {
		f := strings.Split(line, "\t")
		fmt.Println(errName(childOp(f[0], f[1:])))
	}
}

func childOp(verb string, a []string) error {
	num := func(i int) int64 { n, _ := strconv.ParseInt(a[i], 0, 64); return n }
	switch verb {
	case "append":
		fd, err := unix.Open(a[0], unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		_, err = unix.Write(fd, []byte(a[1]))
		if cerr := unix.Close(fd); err == nil {
			err = cerr
		}
		return err
	case "read":
		fd, err := unix.Open(a[0], unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			_, err = unix.Read(fd, make([]byte, 100))
			unix.Close(fd)
		}
		return err
	case "create":
		return mkfileMode(a[0], uint32(num(1)))
	case "mkdir":
		return unix.Mkdir(a[0], uint32(num(1)))
	case "mkfifo":
		return unix.Mkfifo(a[0], uint32(num(1)))
	case "truncate":
		return unix.Truncate(a[0], num(1))
	case "chmod":
		return unix.Chmod(a[0], uint32(num(1)))
	case "chown":
		return unix.Chown(a[0], int(num(1)), int(num(2)))
	case "unlink":
		return unix.Unlink(a[0])
	case "rmdir":
		return unix.Rmdir(a[0])
	case "rename":
		return unix.Rename(a[0], a[1])
	case "utime-now":
		return unix.UtimesNanoAt(unix.AT_FDCWD, a[0], nil, 0)
	case "utime-set":
		return unix.UtimesNanoAt(unix.AT_FDCWD, a[0], []unix.Timespec{{Sec: 1}, {Sec: 2}}, 0)
	case "setxattr":
		return unix.Setxattr(a[0], a[1], []byte(a[2]), 0)
	case "opendir":
		fd, err := unix.Open(a[0], unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}
	return fmt.Errorf("unknown child op %q", verb)
}

func mkfileMode(path string, mode uint32) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, mode)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// childBinary is a copy of this test binary that any user may run.
var childBinary = sync.OnceValues(func() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("own executable: %w", err)
	}
	dir, err := os.MkdirTemp("", "spoolfs-e2e-child-")
	if err != nil {
		return "", err
	}
	cleanups = append(cleanups, func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	in, err := os.Open(self)
	if err != nil {
		return "", err
	}
	defer in.Close()
	path := filepath.Join(dir, "e2e.test")
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o755)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return "", err
	}
	return path, out.Close()
})

// cleanups run at the end of TestMain.
var cleanups []func()

// asUser runs ops (verb and arguments; paths relative to the scenario) as
// uid:gid with no supplementary groups and records each errno.
func (p *probe) asUser(uid, gid uint32, ops ...[]string) {
	bin, err := childBinary()
	if err != nil {
		p.t.Fatalf("child binary: %v", err)
	}
	var lines []string
	for _, op := range ops {
		args := append([]string(nil), op...)
		for i := 1; i < len(args); i++ {
			if strings.HasPrefix(args[i], "@") { // a path
				args[i] = p.P(args[i][1:])
			}
		}
		lines = append(lines, strings.Join(args, "\t"))
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), childEnv+"="+strings.Join(lines, "\n"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.Output()
	if err != nil {
		p.t.Fatalf("child as %d:%d: %v (%s)", uid, gid, err, out)
	}
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i, op := range ops {
		p.note("as %d:%d %s: %s", uid, gid, strings.Join(op, " "), lineAt(got, i))
	}
}

// TestPOSIXOtherUser compares permission checks and set-id clearing as an
// unprivileged user; the subject is mounted with -o allow_other.
func TestPOSIXOtherUser(t *testing.T) {
	pair := newPairArgs(t, "-o", "allow_other")
	pair.deadline(t, defaultDeadline)
	runScenarios(t, pair, []scenario{
		{"write-and-truncate-clear-setid", scClearSetidByUser},
		{"chmod-by-owner", scChmodByOwner},
		{"permission-denied", scPermissionDenied},
		{"ownership-of-new-files", scOwnership},
	})
}

const other = 1000 // the unprivileged uid and gid

func scClearSetidByUser(p *probe) {
	p.check("chmod . 0777", unix.Chmod(p.P(""), 0o777))
	modes := []uint32{0o6777, 0o2777, 0o2767, 0o4777, 0o6767}
	var ops [][]string
	var files []string
	for i, m := range modes {
		for _, how := range []string{"append", "truncate"} {
			f := fmt.Sprintf("%s%d", how, i)
			p.writeFile(f, []byte("data"))
			p.check(fmt.Sprintf("chmod %s %04o", f, m), unix.Chmod(p.P(f), m))
			arg := "x"
			if how == "truncate" {
				arg = "2"
			}
			ops = append(ops, []string{how, "@" + f, arg})
			files = append(files, f)
		}
	}
	// A file the user owns: the owner writing does not keep the bits either.
	p.writeFile("own", []byte("data"))
	p.check("chown own", unix.Chown(p.P("own"), other, other))
	p.check("chmod own 06755", unix.Chmod(p.P("own"), 0o6755))
	ops = append(ops, []string{"append", "@own", "x"})
	p.asUser(other, other, ops...) // one child process: they are slow to start under -race
	for i, f := range append(files, "own") {
		if i < len(files) && modes[i/2]&0o2010 == 0o2000 {
			// Known limitation of the kernel's FUSE module, not of
			// spoolfs: fuse_setattr (fs/fuse/dir.c) clears setgid on
			// write or truncate by another user only together with
			// group-exec, the rule from before Linux 6.x; tmpfs now
			// clears it in any case. spoolfs never sees the request.
			var st unix.Stat_t
			err := unix.Lstat(p.P(f), &st)
			p.known("lstat %s: %s %s", f, statLine(&st), errName(err))
			continue
		}
		p.lstat(f)
	}
}

func scChmodByOwner(p *probe) {
	p.writeFile("f", []byte("x"))
	p.check("chown f 1000:2000", unix.Chown(p.P("f"), other, 2000))
	p.asUser(other, other, []string{"chmod", "@f", "02755"}) // not in group 2000: sgid dropped
	p.lstat("f")
	p.asUser(other, other, []string{"chmod", "@f", "04755"})
	p.lstat("f")
	p.check("chown f 1000:1000", unix.Chown(p.P("f"), other, other))
	p.asUser(other, other, []string{"chmod", "@f", "02755"}) // in its own group: kept
	p.lstat("f")
	p.asUser(other, other,
		[]string{"chown", "@f", "0", "-1"},
		[]string{"chown", "@f", "-1", "2000"},
		[]string{"chown", "@f", "-1", "1000"},
		[]string{"utime-set", "@f"},
		[]string{"utime-now", "@f"})
	p.lstat("f")
}

func scPermissionDenied(p *probe) {
	p.writeFile("ro", []byte("root's"))
	p.writeFile("secret", []byte("root's"))
	p.check("chmod secret 0600", unix.Chmod(p.P("secret"), 0o600))
	p.writeFile("shared", []byte("anyone may write"))
	p.check("chmod shared 0666", unix.Chmod(p.P("shared"), 0o666))
	p.check("mkdir closed", unix.Mkdir(p.P("closed"), 0o700))
	p.check("mkdir sticky", unix.Mkdir(p.P("sticky"), 0o777))
	p.check("chmod sticky 01777", unix.Chmod(p.P("sticky"), 0o1777))
	p.writeFile("sticky/roots", nil)
	p.check("chmod sticky/roots 0666", unix.Chmod(p.P("sticky/roots"), 0o666))
	p.asUser(other, other,
		[]string{"append", "@ro", "x"},
		[]string{"read", "@ro"},
		[]string{"read", "@secret"},
		[]string{"append", "@shared", "x"},
		[]string{"truncate", "@ro", "0"},
		[]string{"create", "@new", "0644"},
		[]string{"mkdir", "@newdir", "0755"},
		[]string{"unlink", "@ro"},
		[]string{"rename", "@ro", "@ro2"},
		[]string{"chmod", "@ro", "0777"},
		[]string{"chown", "@ro", "1000", "1000"},
		[]string{"utime-set", "@shared"},
		[]string{"utime-now", "@shared"},
		[]string{"utime-now", "@ro"},
		[]string{"setxattr", "@ro", "user.x", "v"},
		[]string{"setxattr", "@shared", "user.x", "v"},
		[]string{"setxattr", "@shared", "trusted.x", "v"},
		[]string{"opendir", "@closed"},
		[]string{"create", "@closed/x", "0644"},
		[]string{"create", "@sticky/mine", "0644"},
		[]string{"unlink", "@sticky/roots"},
		[]string{"rename", "@sticky/roots", "@sticky/moved"},
		[]string{"append", "@sticky/roots", "x"},
		[]string{"unlink", "@sticky/mine"})
	p.lstat("shared")
	p.lstat("sticky/roots")
}

func scOwnership(p *probe) {
	p.check("chmod . 0777", unix.Chmod(p.P(""), 0o777))
	p.check("mkdir g", unix.Mkdir(p.P("g"), 0o777))
	p.check("chown g 0:3000", unix.Chown(p.P("g"), 0, 3000))
	p.check("chmod g 02777", unix.Chmod(p.P("g"), 0o2777))
	p.asUser(other, other,
		[]string{"create", "@f", "0640"},
		[]string{"mkdir", "@d", "0750"},
		[]string{"mkfifo", "@p", "0600"},
		[]string{"create", "@g/f", "02755"},
		[]string{"mkdir", "@g/d", "0755"})
	for _, rel := range []string{"f", "d", "p", "g/f", "g/d"} {
		p.lstat(rel)
	}
}
