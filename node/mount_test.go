package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

const exitTimeout = 15 * time.Second

// writeRead checks the mount serves: write a file, read it back.
func writeRead(t *testing.T, dir, name string) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("message "+name), 0o644); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "message "+name {
		t.Fatalf("read %s = %q, %v", path, got, err)
	}
}

// stopClean sends SIGTERM and checks spoolfs exits 0 with the mount gone.
func stopClean(t *testing.T, p *proc, dir string) {
	t.Helper()
	p.signal(t, syscall.SIGTERM)
	if code := p.waitExit(t, exitTimeout); code != 0 {
		t.Fatalf("exit status after SIGTERM = %d, want 0; stderr:\n%s", code, p.stderr)
	}
	if at := fuseMountsAt(t, dir); len(at) != 0 {
		t.Fatalf("still mounted after spoolfs exited: %+v", at)
	}
}

func TestMountServeSIGTERM(t *testing.T) {
	requireMount(t)
	dir := newMountDir(t)
	p := startSpoolfs(t, nil, "mount", "--local", "vol-life", dir)
	m := waitMounted(t, p, dir)
	if m.Source != "spoolfs:vol-life" || m.FSType != "fuse.spoolfs" {
		t.Errorf("mountinfo shows %q type %q; want spoolfs:vol-life type fuse.spoolfs", m.Source, m.FSType)
	}
	for _, o := range []string{"nosuid", "nodev", "rw"} {
		if !hasOpt(m.Opts, o) {
			t.Errorf("mount options %q lack %s", m.Opts, o)
		}
	}
	writeRead(t, dir, "a")
	stopClean(t, p, dir)
	if !strings.Contains(p.stderr.String(), `"unmounted"`) {
		t.Errorf("no \"unmounted\" log line; stderr:\n%s", p.stderr)
	}
}

func hasOpt(opts, o string) bool {
	for _, x := range strings.Split(opts, ",") {
		if x == o {
			return true
		}
	}
	return false
}

// runToExit runs spoolfs to completion and returns its status and stderr.
func runToExit(t *testing.T, args ...string) (int, string) {
	t.Helper()
	return runToExitAs(t, nil, args...)
}

// runToExitAs is runToExit as cred's user (nil: this process's).
func runToExitAs(t *testing.T, cred *syscall.Credential, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, spoolfsBin(t), args...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var stderr testsupport.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("spoolfs %q did not exit within 30s; stderr:\n%s", args, stderr.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running spoolfs: %v", err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// checkOneLineError checks a failed run: status, one line naming the
// problem, nothing mounted at dir.
func checkOneLineError(t *testing.T, code int, stderr string, wantCode int, want, dir string) {
	t.Helper()
	if code != wantCode {
		t.Errorf("exit status %d, want %d; stderr:\n%s", code, wantCode, stderr)
	}
	line := strings.TrimSuffix(stderr, "\n")
	if strings.Contains(line, "\n") || !strings.HasPrefix(line, "spoolfs: ") {
		t.Errorf("stderr is not one line starting with \"spoolfs: \":\n%s", stderr)
	}
	if !strings.Contains(line, want) {
		t.Errorf("stderr %q does not say %q", line, want)
	}
	if dir != "" && len(fuseMountsAt(t, dir)) != 0 {
		t.Errorf("%s got mounted anyway", dir)
	}
}

func TestMountErrors(t *testing.T) {
	requireBinary(t)
	base := t.TempDir()
	dir := filepath.Join(base, "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(base, "missing")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"missing", []string{"mount", "--local", "v", missing}, 1, "mount point " + missing + ": no such directory"},
		{"missing parent", []string{"mount", "--local", "v", missing + "/x"}, 1, "mount point " + missing + "/x: no such directory"},
		{"not a dir", []string{"mount", "--local", "v", file}, 1, "mount point " + file + ": not a directory"},
		{"bad -o", []string{"mount", "--local", "-o", "allow_other,frobnicate", "v", dir}, 2, `unknown mount option "frobnicate"`},
		{"bad -o value", []string{"mount", "--local", "-o", "entry_timeout=soon", "v", dir}, 2, `entry_timeout="soon"`},
		{"bad flag", []string{"mount", "--local", "--frobnicate", "v", dir}, 2, "unknown flag: --frobnicate"},
		{"bad flag value", []string{"mount", "--local", "--capacity", "lots", "v", dir}, 2, `size "lots"`},
		{"no --local", []string{"mount", "v", dir}, 2, "no replicas: pass --replicas"},
		{"local and replicas", []string{"mount", "--local", "--replicas", "a:1,b:1,c:1", "v", dir}, 2, "--local and --replicas exclude each other"},
		{"w without replicas", []string{"mount", "--local", "--w", "2", "v", dir}, 2, "--w: only with --replicas"},
		{"bad w", []string{"mount", "--replicas", "a:1,b:1,c:1", "--w", "1", "v", dir}, 2, "--w: must be 2 or 3"},
		{"replica twice", []string{"mount", "--replicas", "a:1,a:1,c:1", "v", dir}, 2, "--replicas[1]: a:1 listed twice"},
		{"follow no quorum", []string{"mount", "--log-level", "error", "--replicas", "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3", "-o", "ro", "--acquire-timeout", "1s", "v", dir}, 1, "volume v: loading it to follow"},
		{"follow local", []string{"mount", "--local", "--follow", "v", dir}, 2, "--follow and --local exclude each other"},
		{"follow alone", []string{"mount", "--follow", "v", dir}, 2, "--follow: want --replicas"},
		{"follow lag alone", []string{"mount", "--replicas", "a:1,b:1,c:1", "--max-follow-lag", "1s", "v", dir}, 2, "--max-follow-lag: only with --follow"},
		{"follow bad lag", []string{"mount", "--follow", "--replicas", "a:1,b:1,c:1", "--max-follow-lag", "0s", "v", dir}, 2, "--max-follow-lag 0s: want a positive duration"},
		{"no quorum", []string{"mount", "--log-level", "error", "--replicas", "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3", "--acquire-timeout", "1s", "v", dir}, 1, "no quorum"},
		{"nothing after --", []string{"mount", "--local", "v", dir, "--"}, 2, "nothing after --"},
		{"bad volume", []string{"mount", "--local", "a/b", dir}, 2, `volume name "a/b"`},
		{"one arg", []string{"mount", "--local", "v"}, 2, "want VOLUME and MOUNTPOINT, got 1 arguments"},
		{"bad log level", []string{"mount", "--local", "--log-level", "loud", "v", dir}, 2, `--log-level "loud"`},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stderr := runToExit(t, tc.args...)
			checkOneLineError(t, code, stderr, tc.code, tc.want, dir)
		})
	}
}

func TestMountBusy(t *testing.T) {
	requireMount(t)
	dir := newMountDir(t)
	p := startSpoolfs(t, nil, "mount", "--local", "vol-a", dir)
	waitMounted(t, p, dir)

	code, stderr := runToExit(t, "mount", "--local", "vol-b", dir)
	if code != 1 {
		t.Errorf("second mount: exit status %d, want 1", code)
	}
	want := "spoolfs: mount point " + dir + " is busy: already mounted (fuse.spoolfs spoolfs:vol-a)\n"
	if stderr != want {
		t.Errorf("second mount said %q, want %q", stderr, want)
	}
	if at := fuseMountsAt(t, dir); len(at) != 1 || at[0].Source != "spoolfs:vol-a" {
		t.Errorf("mounts at %s: %+v; want only spoolfs:vol-a", dir, at)
	}
	writeRead(t, dir, "still-served")
	stopClean(t, p, dir)
}

func TestMountReplacesStale(t *testing.T) {
	requireMount(t)
	dir := newMountDir(t)
	p := startSpoolfs(t, nil, "mount", "--local", "vol-stale", dir)
	waitMounted(t, p, dir)
	writeRead(t, dir, "before")
	p.signal(t, syscall.SIGKILL)
	p.waitExit(t, exitTimeout)

	// stat may still answer from the kernel's attribute cache; statfs and
	// readdir always ask the (dead) server.
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); !errors.Is(err, unix.ENOTCONN) {
		t.Fatalf("statfs of the dead mount = %v, want ENOTCONN", err)
	}
	if _, err := os.ReadDir(dir); !errors.Is(err, unix.ENOTCONN) {
		t.Fatalf("readdir of the dead mount = %v, want ENOTCONN", err)
	}
	p2 := startSpoolfs(t, nil, "mount", "--local", "vol-stale", dir)
	waitLog(t, p2, `"msg":"mounted"`) // the dead mount is at dir until then
	if at := fuseMountsAt(t, dir); len(at) != 1 {
		t.Fatalf("mounts at %s: %+v; want the new one only", dir, at)
	}
	writeRead(t, dir, "after")
	if _, err := os.Stat(filepath.Join(dir, "before")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a --local volume came back with old content: stat = %v", err)
	}
	if !strings.Contains(p2.stderr.String(), "removed a stale mount") {
		t.Errorf("the stale mount was not logged; stderr:\n%s", p2.stderr)
	}
	stopClean(t, p2, dir)
}

func TestMountReadOnly(t *testing.T) {
	requireMount(t)
	dir := newMountDir(t)
	p := startSpoolfs(t, nil, "mount", "--local", "-o", "ro", "vol-ro", dir)
	m := waitMounted(t, p, dir)
	if !hasOpt(m.Opts, "ro") {
		t.Errorf("mount options %q lack ro", m.Opts)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("create on -o ro = %v, want EROFS", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); !errors.Is(err, syscall.EROFS) {
		t.Errorf("mkdir on -o ro = %v, want EROFS", err)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("readdir on -o ro = %v, %v; want empty, nil", ents, err)
	}
	stopClean(t, p, dir)
}

func TestMountAllowOther(t *testing.T) {
	requireMount(t)
	for _, allow := range []bool{true, false} {
		name := map[bool]string{true: "allow_other", false: "default"}[allow]
		t.Run(name, func(t *testing.T) {
			dir := newMountDir(t)
			args := []string{"mount", "--local", "vol-other", dir}
			if allow {
				args = append(args, "-o", "allow_other")
			}
			p := startSpoolfs(t, nil, args...)
			waitMounted(t, p, dir)
			pub := filepath.Join(dir, "pub")
			if err := os.Mkdir(pub, 0o777); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(pub, 0o777); err != nil {
				t.Fatal(err)
			}
			out, err := runAsNobody(t, "echo hi > "+pub+"/f && cat "+pub+"/f")
			if !allow {
				if err == nil || !strings.Contains(out, "Permission denied") {
					t.Errorf("without allow_other, nobody got %q, %v; want Permission denied", out, err)
				}
				stopClean(t, p, dir)
				return
			}
			if err != nil || out != "hi\n" {
				t.Fatalf("with allow_other, nobody got %q, %v; want hi", out, err)
			}
			var st unix.Stat_t
			if err := unix.Stat(pub+"/f", &st); err != nil || st.Uid != 65534 {
				t.Errorf("file made by nobody: uid %d, %v; want 65534", st.Uid, err)
			}
			stopClean(t, p, dir)
		})
	}
}

// stopBusyMount starts `spoolfs mount --local --unmount-timeout
// unmountTimeout vol DIR`, opens a file in it (closed in t's cleanups, or
// before) and sends SIGTERM: an unmount that finds the mount busy.
func stopBusyMount(t *testing.T, unmountTimeout, vol string) (*proc, string, *os.File) {
	t.Helper()
	requireMount(t)
	dir := newMountDir(t)
	p := startSpoolfs(t, nil, "mount", "--local", "--unmount-timeout", unmountTimeout, vol, dir)
	waitMounted(t, p, dir)
	f, err := os.Create(filepath.Join(dir, "open"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	p.signal(t, syscall.SIGTERM)
	return p, dir, f
}

// TestMountBusyUnmount: SIGTERM while a file is open retries, then
// detaches lazily and serves the open file until it is closed; then
// spoolfs exits 0.
func TestMountBusyUnmount(t *testing.T) {
	p, dir, f := stopBusyMount(t, "300ms", "vol-busy")
	waitUnmounted(t, dir, exitTimeout) // detached after 300ms of EBUSY
	if _, err := f.WriteString("still served"); err != nil {
		t.Fatalf("write through the open file after the lazy unmount: %v", err)
	}
	buf := make([]byte, 32)
	if n, err := f.ReadAt(buf, 0); string(buf[:n]) != "still served" {
		t.Fatalf("read back %q, %v", buf[:n], err)
	}
	if p.exited() {
		t.Fatalf("spoolfs exited while a file was open; stderr:\n%s", p.stderr)
	}
	f.Close()
	if code := p.waitExit(t, exitTimeout); code != 0 {
		t.Errorf("exit status %d, want 0; stderr:\n%s", code, p.stderr)
	}
	if !strings.Contains(p.stderr.String(), "detached it lazily") {
		t.Errorf("the lazy unmount was not logged; stderr:\n%s", p.stderr)
	}
}

// TestMountSecondSignalForces: a second signal while the unmount waits
// for a busy mount forces a lazy unmount and exit status 1.
func TestMountSecondSignalForces(t *testing.T) {
	p, dir, _ := stopBusyMount(t, "1h", "vol-force") // the file stays open
	waitLog(t, p, "stopping: unmounting")
	p.signal(t, syscall.SIGINT)
	if code := p.waitExit(t, exitTimeout); code != 1 {
		t.Errorf("exit status after a second signal = %d, want 1; stderr:\n%s", code, p.stderr)
	}
	waitUnmounted(t, dir, exitTimeout)
}

// waitLog waits until spoolfs logged msg.
func waitLog(t *testing.T, p *proc, msg string) {
	t.Helper()
	testsupport.WaitForErr(t, exitTimeout, fmt.Sprintf("spoolfs to log %q", msg), func() error {
		if strings.Contains(p.stderr.String(), msg) {
			return nil
		}
		if p.exited() {
			t.Fatalf("spoolfs exited without logging %q; stderr:\n%s", msg, p.stderr)
		}
		return fmt.Errorf("stderr:\n%s", p.stderr)
	})
}

// TestMountNonRoot: as an unprivileged user spoolfs mounts through
// fusermount3, /proc/mounts shows the volume, and SIGTERM unmounts.
func TestMountNonRoot(t *testing.T) {
	requireMount(t)
	fm := testsupport.RequireCmd(t, "fusermount3")
	if st, err := os.Stat(fm); err != nil || st.Mode()&os.ModeSetuid == 0 {
		testsupport.Unavailable(t, "%s is not setuid root", fm)
	}
	testsupport.OpenDevFuse(t)
	dir := newMountDir(t)
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	p := startSpoolfs(t, &syscall.Credential{Uid: 65534, Gid: 65534}, "mount", "--local", "vol-user", dir)
	m := waitMounted(t, p, dir)
	if m.Source != "spoolfs:vol-user" || m.FSType != "fuse.spoolfs" {
		t.Errorf("mountinfo shows %q type %q; want spoolfs:vol-user type fuse.spoolfs", m.Source, m.FSType)
	}
	mounts, err := os.ReadFile("/proc/mounts")
	if err != nil || !strings.Contains(string(mounts), "spoolfs:vol-user "+dir+" fuse.spoolfs ") {
		t.Errorf("/proc/mounts lacks the volume (%v):\n%s", err, mounts)
	}
	waitLog(t, p, `"via":"fusermount3"`)
	out, err := runAsNobody(t, "echo hi > "+dir+"/f && cat "+dir+"/f")
	if err != nil || out != "hi\n" {
		t.Errorf("nobody in its own mount: %q, %v", out, err)
	}
	stopClean(t, p, dir)
}

// TestMountNeitherWorks: an unprivileged user on a mount point it may not
// write gets one line saying what was tried and why each failed.
func TestMountNeitherWorks(t *testing.T) {
	requireMount(t)
	testsupport.OpenDevFuse(t)
	dir := newMountDir(t) // owned by root, 0755
	code, stderr := runToExitAs(t, &syscall.Credential{Uid: 65534, Gid: 65534}, "mount", "--local", "v", dir)
	checkOneLineError(t, code, stderr, 1, "cannot mount "+dir+": tried mount(2): operation not permitted", dir)
	if !strings.Contains(stderr, "; tried fusermount3: ") {
		t.Errorf("stderr %q does not say fusermount3 was tried", stderr)
	}
}

// TestMountAbortedConnection: when the FUSE connection is aborted under
// it (fusectl's abort), spoolfs exits 1 and leaves no dead mount behind.
func TestMountAbortedConnection(t *testing.T) {
	requireMount(t)
	dir := newMountDir(t)
	p := startSpoolfs(t, nil, "mount", "--local", "vol-abort", dir)
	waitMounted(t, p, dir)
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	// fusectl is mounted in a private mount namespace: the host's stays as it is.
	// If the host has it mounted already, the private namespace inherits it.
	script := "{ grep -q ' /sys/fs/fuse/connections fusectl ' /proc/self/mounts || mount -t fusectl none /sys/fs/fuse/connections; } && echo 1 > /sys/fs/fuse/connections/" +
		strconv.Itoa(int(unix.Minor(st.Dev))) + "/abort"
	if out, err := exec.Command("unshare", "-m", "sh", "-c", script).CombinedOutput(); err != nil {
		testsupport.Unavailable(t, "cannot abort through fusectl: %v: %s", err, out)
	}
	if code := p.waitExit(t, exitTimeout); code != 1 {
		t.Errorf("exit status after an abort = %d, want 1; stderr:\n%s", code, p.stderr)
	}
	if at := fuseMountsAt(t, dir); len(at) != 0 {
		t.Errorf("dead mount left behind: %+v", at)
	}
}
