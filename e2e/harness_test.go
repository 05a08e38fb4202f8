package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

var (
	flagSubject = flag.String("e2e.subject", "spoolfs",
		"filesystem under test: spoolfs (the built binary), or tmpfs to check the test machinery itself")
	flagMountArgs = flag.String("e2e.mountargs", "",
		"extra flags for `spoolfs mount`, space separated (e.g. \"--writeback-cache=false\")")
	flagRaceBin = flag.Bool("e2e.racebin", false, "build the spoolfs binary with -race")
)

// Deadlines of the harness.
const (
	mountDeadline   = 15 * time.Second // from start to a served mount
	unmountDeadline = 15 * time.Second // from SIGTERM to exit and unmount
)

// bin is the spoolfs binary under test, built once by testsupport.Binary
// (needBinary) before the first process starts.
var bin atomic.Pointer[string]

// needBinary builds the binary under test (with -race under -e2e.racebin)
// unless it is built already; binPath returns it from then on.
func needBinary(t testing.TB) {
	t.Helper()
	var flags []string
	if *flagRaceBin {
		flags = append(flags, "-race")
	}
	path := testsupport.Binary(t, flags...)
	bin.Store(&path)
}

// binPath is the binary needBinary built.
func binPath() string {
	p := bin.Load()
	if p == nil {
		panic("e2e: a spoolfs process started before needBinary")
	}
	return *p
}

func TestMain(m *testing.M) {
	if ops, ok := os.LookupEnv(childEnv); ok {
		childMain(ops) // a child run as another user (user_test.go)
		os.Exit(0)
	}
	if cfg, ok := os.LookupEnv(faultClientEnv); ok {
		faultClientMain(cfg) // a client of the fault-injection test (faults_client_test.go)
	}
	flag.Parse()
	// Deterministic permission bits: every scenario creates files with the
	// same umask on both filesystems.
	syscall.Umask(0o022)
	code := testsupport.Run(m) // removes the binary needBinary built
	for _, f := range cleanups {
		f()
	}
	os.Exit(code)
}

// requireMountable checks what a mount needs from the machine (failing
// under CI=true when it is missing: testsupport).
func requireMountable(t testing.TB) {
	t.Helper()
	testsupport.SkipShort(t, "e2e mounts filesystems")
	testsupport.RequireRoot(t, "mounting tmpfs and FUSE with mount(2)")
	if *flagSubject == "spoolfs" {
		testsupport.RequireMount(t)
	}
}

// fsPair is a reference tmpfs and the filesystem under test, both mounted
// for one top-level test.
type fsPair struct {
	Ref  string       // a private tmpfs
	Sub  string       // the spoolfs mount (or a second tmpfs with -e2e.subject=tmpfs)
	proc *spoolfsProc // the spoolfs process; nil for a tmpfs subject
	n    int
}

// newPair mounts a fresh reference tmpfs and a fresh subject volume; both
// are unmounted in t.Cleanup.
func newPair(t *testing.T) *fsPair {
	t.Helper()
	return newPairArgs(t)
}

// newPairArgs is newPair with extra `spoolfs mount` arguments.
func newPairArgs(t *testing.T, spoolfsArgs ...string) *fsPair {
	t.Helper()
	ref := mountTmpfs(t)
	sub, proc := mountSubject(t, spoolfsArgs...)
	return &fsPair{Ref: ref, Sub: sub, proc: proc}
}

// defaultDeadline bounds one top-level test.
const defaultDeadline = 5 * time.Minute

// deadline makes the test fail if it runs longer than d: the spoolfs
// process is killed and its mount detached, so that system calls blocked
// on it return (ENOTCONN) and the test ends instead of hanging.
func (p *fsPair) deadline(t *testing.T, d time.Duration) {
	var mu sync.Mutex
	over := false
	timer := time.AfterFunc(d, func() {
		mu.Lock()
		defer mu.Unlock()
		if over {
			return
		}
		t.Errorf("deadline of %v exceeded: killing the subject so blocked calls return", d)
		if p.proc != nil {
			p.proc.abort()
		}
	})
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		over = true
		timer.Stop()
	})
}

// dirs returns a new empty directory on each side, for one scenario.
func (p *fsPair) dirs(t testing.TB) (ref, sub string) {
	t.Helper()
	p.n++
	name := fmt.Sprintf("case%03d", p.n)
	ref, sub = filepath.Join(p.Ref, name), filepath.Join(p.Sub, name)
	for _, d := range []string{ref, sub} {
		if err := unix.Mkdir(d, 0o755); err != nil {
			t.Fatalf("mkdir %s: %v", d, err)
		}
	}
	return ref, sub
}

// mountSubject mounts the filesystem under test.
func mountSubject(t *testing.T, spoolfsArgs ...string) (string, *spoolfsProc) {
	t.Helper()
	switch *flagSubject {
	case "tmpfs":
		return mountTmpfs(t), nil
	case "spoolfs":
		p := mountSpoolfs(t, spoolfsArgs...)
		return p.Dir, p
	default:
		t.Fatalf("-e2e.subject=%q: want spoolfs or tmpfs", *flagSubject)
		return "", nil
	}
}

// mountTmpfs mounts a private tmpfs (nosuid,nodev like a spoolfs mount, root
// mode 0755 like a new volume) and unmounts it in t.Cleanup.
func mountTmpfs(t *testing.T) string {
	t.Helper()
	requireMountable(t)
	dir := mountPoint(t)
	err := unix.Mount("spoolfs-e2e-ref", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=4g,mode=0755")
	if err != nil {
		testsupport.Unavailable(t, "cannot mount: mount -t tmpfs %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("umount tmpfs %s: %v (detaching it)", dir, err)
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

// mountPoint makes an empty directory to mount on, reachable by every user
// (t.TempDir's parent is 0700; the tests as another user need to get in).
func mountPoint(t *testing.T) string {
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// spoolfsProc is one running `spoolfs mount` process.
type spoolfsProc struct {
	Dir    string
	cmd    *exec.Cmd
	stderr *testsupport.Buffer
	exited chan struct{} // closed when the process has exited
	err    error         // its Wait result, valid after exited
}

// mountSpoolfs starts `spoolfs mount --local VOL DIR`, waits until the
// mount is in /proc/self/mountinfo and answers a stat, and registers the
// unmount (SIGTERM, wait, verify; lazy umount only as a last resort).
func mountSpoolfs(t *testing.T, extraArgs ...string) *spoolfsProc {
	t.Helper()
	requireMountable(t)
	needBinary(t)
	p, err := startSpoolfs(mountPoint(t), "e2e-"+sanitize(t.Name()), extraArgs...)
	if p != nil {
		t.Cleanup(func() { p.stop(t) })
	}
	if err != nil {
		t.Fatalf("spoolfs mount: %v", err)
	}
	return p
}

// sanitize makes a test name usable as a volume name.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, s)
}

// startSpoolfs runs the binary and waits for a served mount. On error the
// returned process (if any) must still be stopped.
func startSpoolfs(dir, volume string, extraArgs ...string) (*spoolfsProc, error) {
	args := []string{"mount", "--local"}
	args = append(args, strings.Fields(*flagMountArgs)...)
	args = append(args, extraArgs...)
	args = append(args, volume, dir)
	p := &spoolfsProc{Dir: dir, stderr: &testsupport.Buffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(binPath(), args...)
	p.cmd.Stdout = p.stderr
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", binPath(), err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	if err := p.waitServed(); err != nil {
		return p, fmt.Errorf("%v %s: %w\nspoolfs output:\n%s", binPath(), strings.Join(args, " "), err, p.stderr.String())
	}
	return p, nil
}

// waitServed waits until the mount is listed and its root answers stat.
func (p *spoolfsProc) waitServed() error {
	deadline := time.Now().Add(mountDeadline)
	for !isMounted(p.Dir, "fuse.spoolfs") {
		select {
		case <-p.exited:
			return fmt.Errorf("exited before mounting: %v", p.err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not mounted after %v", mountDeadline)
		}
	}
	done := make(chan error, 1)
	go func() {
		var st unix.Stat_t
		done <- unix.Stat(p.Dir, &st)
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("stat of the mounted root: %w", err)
		}
		return nil
	case <-time.After(time.Until(deadline)):
		return fmt.Errorf("stat of the mounted root did not answer within %v", mountDeadline)
	}
}

// stop sends SIGTERM, waits for the process to exit and checks that the
// mount is gone. Anything else is an error of the test, after which the
// mount is detached and the process killed so no stuck mount remains.
func (p *spoolfsProc) stop(t testing.TB) {
	t.Helper()
	select {
	case <-p.exited:
		t.Errorf("spoolfs exited before the end of the test: %v", p.err)
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
			if p.err != nil {
				t.Errorf("spoolfs after SIGTERM: %v", p.err)
			}
		case <-time.After(unmountDeadline):
			t.Errorf("spoolfs did not exit within %v of SIGTERM: detaching and killing it", unmountDeadline)
		}
	}
	if isMounted(p.Dir, "") {
		t.Errorf("%s is still mounted after spoolfs stopped: detaching it", p.Dir)
		_ = unix.Unmount(p.Dir, unix.MNT_DETACH)
	}
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	if t.Failed() {
		t.Logf("spoolfs output (last lines):\n%s", lastLines(p.stderr.String(), 40))
	}
}

// rootFd opens the mount's root directory (closed in t.Cleanup).
func (p *spoolfsProc) rootFd(t testing.TB) int {
	fd, err := unix.Open(p.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", p.Dir, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// abort kills the process and detaches its mount (deadline exceeded).
func (p *spoolfsProc) abort() {
	_ = p.cmd.Process.Kill()
	_ = unix.Unmount(p.Dir, unix.MNT_DETACH)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[%d lines before]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	Point, FSType, Source string
}

// mountInfo parses /proc/self/mountinfo.
func mountInfo() ([]mountEntry, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	var out []mountEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 2 {
			continue
		}
		out = append(out, mountEntry{Point: unescapeMount(f[4]), FSType: g[0], Source: unescapeMount(g[1])})
	}
	return out, nil
}

// unescapeMount undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			var v byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// isMounted says whether dir is a mount point (of fsType, when not empty).
func isMounted(dir, fsType string) bool {
	entries, err := mountInfo()
	if err != nil {
		return false
	}
	for _, e := range entries {
		if e.Point == dir && (fsType == "" || e.FSType == fsType) {
			return true
		}
	}
	return false
}

// errnoOf returns the errno inside err: 0 for nil.
func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return syscall.Errno(0xffff) // not a system call error: never equal to a real errno
}

// errName names an error by its errno: "OK", "ENOENT", ...
func errName(err error) string {
	e := errnoOf(err)
	switch {
	case e == 0:
		return "OK"
	case e == 0xffff:
		return "non-errno error: " + err.Error()
	}
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return fmt.Sprintf("errno %d", int(e))
}

// TestHarnessMount checks the harness itself: the subject is mounted where
// it says, and both sides are separate filesystems.
func TestHarnessMount(t *testing.T) {
	p := newPair(t)
	want := "fuse.spoolfs"
	if *flagSubject == "tmpfs" {
		want = "tmpfs"
	}
	if !isMounted(p.Sub, want) {
		t.Fatalf("%s is not a %s mount", p.Sub, want)
	}
	if *flagSubject == "spoolfs" {
		entries, err := mountInfo()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Point == p.Sub && e.Source != "spoolfs:e2e-TestHarnessMount" {
				t.Errorf("mount source %q, want spoolfs:e2e-TestHarnessMount", e.Source)
			}
		}
	}
	if !isMounted(p.Ref, "tmpfs") {
		t.Fatalf("%s is not a tmpfs mount", p.Ref)
	}
	var a, b unix.Stat_t
	if err := unix.Stat(p.Ref, &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(p.Sub, &b); err != nil {
		t.Fatal(err)
	}
	if a.Dev == b.Dev {
		t.Fatalf("reference and subject share device %d", a.Dev)
	}
}

// waitDeadline bounds the waits of the e2e tests for a condition.
const waitDeadline = 10 * time.Second
