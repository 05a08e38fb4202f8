package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/mountdev"
	"github.com/spoolfs/spoolfs/internal/testsupport"
)

// The tests of this file run the built binary (testsupport.Binary).
func TestMain(m *testing.M) { os.Exit(testsupport.Run(m)) }

// served is a `spoolfs mount` process under test.
type served struct {
	cmd    *exec.Cmd
	stderr *testsupport.Buffer
	done   chan struct{}
}

// exitCode waits up to 30 s for the process to end and returns its status.
func (s *served) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-s.done:
		return s.cmd.ProcessState.ExitCode()
	case <-time.After(30 * time.Second):
		t.Fatalf("spoolfs mount still running 30s after its unmount; stderr:\n%s", s.stderr)
		return -1
	}
}

// mountDir makes an empty directory every user may reach; cleanup
// detaches anything left mounted there.
func mountDir(t *testing.T) string {
	t.Helper()
	base, err := os.MkdirTemp("", "spoolfs-cli-")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "mnt")
	if err := errors.Join(os.Chmod(base, 0o755), os.Mkdir(dir, 0o755)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 4 {
			if at, _ := mountdev.MountsAt(dir); len(at) == 0 {
				break
			}
			unix.Unmount(dir, unix.MNT_DETACH)
		}
		os.RemoveAll(base)
	})
	return dir
}

// startMount runs `spoolfs [flags] mount --local vol dir` (as cred's user
// when not nil) and waits until the volume is mounted.
func startMount(t *testing.T, cred *syscall.Credential, dir string, flags ...string) *served {
	t.Helper()
	testsupport.RequireMount(t)
	args := append(append([]string{}, flags...), "mount", "--local", "cli", dir)
	s := &served{cmd: exec.Command(testsupport.Binary(t), args...), stderr: &testsupport.Buffer{}, done: make(chan struct{})}
	s.cmd.Stderr = s.stderr
	if cred != nil {
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	testsupport.WaitForErr(t, 20*time.Second, "the volume mounted at "+dir, func() error {
		select {
		case <-s.done:
			t.Fatalf("spoolfs mount exited %d; stderr:\n%s", s.cmd.ProcessState.ExitCode(), s.stderr)
		default:
		}
		if at, _ := mountdev.MountsAt(dir); len(at) > 0 && at[len(at)-1].FSType == mountdev.SpoolfsFSType {
			return nil
		}
		return errors.New("not mounted yet")
	})
	return s
}

// spoolfs runs the binary to completion (as cred's user when not nil) and
// returns its exit status, stdout and stderr.
func spoolfs(t *testing.T, cred *syscall.Credential, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testsupport.Binary(t), args...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("spoolfs %s: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// TestUmountCommand: `spoolfs umount` refuses what is not a spoolfs mount,
// says a busy mount is busy and how to detach it, unmounts (the serving
// process then exits 0), and with --lazy detaches a busy one.
func TestUmountCommand(t *testing.T) {
	testsupport.SkipShort(t, "mounts")
	empty := t.TempDir()
	for _, tc := range []struct{ dir, want string }{
		{empty, "nothing is mounted there"},
		{"/proc", "not a spoolfs mount: it is proc"},
		{filepath.Join(empty, "missing"), "no such directory"},
	} {
		code, _, stderr := spoolfs(t, nil, "umount", tc.dir)
		if code != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("umount %s: status %d, stderr %q; want 1 and %q", tc.dir, code, stderr, tc.want)
		}
	}
	if code, _, _ := spoolfs(t, nil, "umount"); code != 2 {
		t.Errorf("umount with no DIR: status %d, want 2", code)
	}

	dir := mountDir(t)
	s := startMount(t, nil, dir)
	f, err := os.Create(filepath.Join(dir, "held"))
	if err != nil {
		t.Fatal(err)
	}
	code, _, stderr := spoolfs(t, nil, "umount", dir)
	if code != 1 || !strings.Contains(stderr, "busy") || !strings.Contains(stderr, "--lazy") {
		t.Errorf("umount of a busy mount: status %d, stderr %q; want 1, busy, --lazy", code, stderr)
	}
	f.Close()
	code, stdout, stderr := spoolfs(t, nil, "umount", dir)
	if code != 0 || !strings.Contains(stdout, "unmounted "+dir) {
		t.Fatalf("umount: status %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code := s.exitCode(t); code != 0 {
		t.Errorf("spoolfs mount exited %d after umount, want 0; stderr:\n%s", code, s.stderr)
	}

	s = startMount(t, nil, dir)
	if f, err = os.Create(filepath.Join(dir, "held")); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := spoolfs(t, nil, "umount", "--lazy", dir); code != 0 {
		t.Fatalf("umount --lazy of a busy mount: status %d, stderr %q", code, stderr)
	}
	if at, _ := mountdev.MountsAt(dir); len(at) != 0 {
		t.Errorf("still in the mount table after umount --lazy: %+v", at)
	}
	if _, err := f.WriteString("still served"); err != nil {
		t.Errorf("write to a file open across the lazy unmount: %v", err)
	}
	f.Close()
	if code := s.exitCode(t); code != 0 {
		t.Errorf("spoolfs mount exited %d after the last file closed, want 0; stderr:\n%s", code, s.stderr)
	}
}

// TestUmountNonRoot: a user who mounted through fusermount3 unmounts with
// spoolfs umount (fusermount3 -u under the hood).
func TestUmountNonRoot(t *testing.T) {
	testsupport.SkipShort(t, "mounts")
	testsupport.RequireRoot(t, "running spoolfs as nobody")
	testsupport.RequireCmd(t, "fusermount3")
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	testsupport.OpenDevFuse(t) // as node's TestMountNonRoot
	dir := mountDir(t)
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	s := startMount(t, nobody, dir)
	code, stdout, stderr := spoolfs(t, nobody, "umount", dir)
	if code != 0 || !strings.Contains(stdout, "unmounted") {
		t.Fatalf("umount as nobody: status %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code := s.exitCode(t); code != 0 {
		t.Errorf("spoolfs mount as nobody exited %d, want 0; stderr:\n%s", code, s.stderr)
	}
}

// TestNormalErrnosQuiet: what ls -l, cp -a, a missing name, xattrs of
// namespaces spoolfs does not keep (POSIX ACLs) and a refused lock do on a
// mount logs nothing above debug, and every JSON log line carries an
// RFC 3339 timestamp.
func TestNormalErrnosQuiet(t *testing.T) {
	testsupport.SkipShort(t, "mounts")
	dir := mountDir(t)
	s := startMount(t, nil, dir, "--log-format", "json")
	src := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "sub", "msg"), []byte("hello"), 0o640); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	for _, argv := range [][]string{
		{"cp", "-a", src, dir + "/"},
		{"ls", "-laR", dir},
		{"cp", "-a", filepath.Join(dir, "src"), filepath.Join(out, "back")},
		{"ls", "-l", filepath.Join(dir, "missing")}, // fails: ENOENT, as ls says
	} {
		if b, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil && argv[1] != "-l" {
			t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, b)
		}
	}
	msg := filepath.Join(dir, "src", "sub", "msg")
	buf := make([]byte, 64)
	for _, name := range []string{"system.posix_acl_access", "user.none", "security.selinux"} {
		unix.Getxattr(msg, name, buf) // EOPNOTSUPP, ENODATA, ENODATA
	}
	unix.Setxattr(msg, "system.posix_acl_access", []byte{2, 0, 0, 0}, 0) // EOPNOTSUPP
	unix.Removexattr(msg, "user.none")                                   // ENODATA
	unix.Listxattr(msg, buf)
	lockTwice(t, msg)

	if code, _, stderr := spoolfs(t, nil, "umount", dir); code != 0 {
		t.Fatalf("umount: %d %s", code, stderr)
	}
	if code := s.exitCode(t); code != 0 {
		t.Fatalf("spoolfs mount exited %d; stderr:\n%s", code, s.stderr)
	}
	lines := strings.Split(strings.TrimSpace(s.stderr.String()), "\n")
	for _, line := range lines {
		var e struct {
			Level string `json:"level"`
			TS    string `json:"ts"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Errorf("log line is not JSON: %v: %s", err, line)
			continue
		}
		if e.Level != "info" && e.Level != "debug" {
			t.Errorf("logged at %s: %s", e.Level, line)
		}
		if _, err := time.Parse(time.RFC3339Nano, e.TS); err != nil {
			t.Errorf("timestamp %q is not RFC 3339: %v", e.TS, err)
		}
	}
	if len(lines) < 2 {
		t.Errorf("expected the mount's info lines, got:\n%s", s.stderr)
	}
}

// lockTwice takes an fcntl write lock on path and asks for it again from a
// second open file description (an OFD lock): EAGAIN, decided by the
// kernel alone.
func lockTwice(t *testing.T, path string) {
	t.Helper()
	a, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
	if err := unix.FcntlFlock(a.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		t.Fatalf("first lock: %v", err)
	}
	if err := unix.FcntlFlock(b.Fd(), unix.F_OFD_SETLK, &lk); !errors.Is(err, unix.EAGAIN) {
		t.Errorf("second lock: %v, want EAGAIN", err)
	}
}

// TestVersionCommand: `spoolfs version` and `spoolfs --version` print the
// same line: the module version, and the commit when the go command could
// stamp it (a git checkout; not a linked worktree, which go build does
// not recognise, nor -buildvcs=false).
func TestVersionCommand(t *testing.T) {
	bin := testsupport.Binary(t, "-buildvcs=true")
	run := func(arg string) string {
		out, err := exec.Command(bin, arg).Output()
		if err != nil {
			t.Fatalf("spoolfs %s: %v", arg, err)
		}
		return strings.TrimSpace(string(out))
	}
	v, flag := run("version"), run("--version")
	if v != flag {
		t.Errorf("version %q and --version %q differ", v, flag)
	}
	if !strings.HasPrefix(v, "spoolfs ") || !strings.Contains(v, "go1.") || strings.Contains(v, "\n") {
		t.Errorf("version line %q", v)
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	top, err2 := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil || err2 != nil {
		testsupport.Unavailable(t, "not a git checkout: %v %v", err, err2)
	}
	if st, err := os.Stat(filepath.Join(strings.TrimSpace(string(top)), ".git")); err == nil && !st.IsDir() {
		if !strings.Contains(v, "commit unknown") {
			t.Errorf("built in a linked worktree, %q should say the commit is unknown", v)
		}
		return
	}
	if want := "commit " + strings.TrimSpace(string(head)); !strings.Contains(v, want) {
		t.Errorf("version %q does not name %q", v, want)
	}
	if strings.HasPrefix(v, "spoolfs (devel)") {
		t.Errorf("version %q: no module version stamped", v)
	}
}

// TestReplicaErrorsNameTheFix: replicas that are not running are asked
// about by name, a recovery that runs out of --acquire-timeout names the
// flag, and a replica set that is not 3 addresses is refused before
// anything is tried.
func TestReplicaErrorsNameTheFix(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := spoolfs(t, nil, "mount", "--log-level", "error", "--replicas", "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3",
		"--acquire-timeout", "1s", "v", dir)
	for _, want := range []string{"acquire timeout of 1s", "raise --acquire-timeout", "is `spoolfs replica` running at 127.0.0.1:2?"} {
		if code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("replicas not running: status %d, stderr %q; want 1 and %q", code, stderr, want)
		}
	}
	code, _, stderr = spoolfs(t, nil, "mount", "--replicas", "127.0.0.1:1,127.0.0.1:2", "v", dir)
	if code != 2 || !strings.Contains(stderr, "--replicas: 2 given (127.0.0.1:1,127.0.0.1:2), want 3") {
		t.Errorf("two replicas: status %d, stderr %q; want 2 and the count", code, stderr)
	}
}
