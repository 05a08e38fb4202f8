package node

import (
	"context"
	"errors"
	"fmt"
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

func TestMain(m *testing.M) { os.Exit(testsupport.Run(m)) }

// spoolfsBin is cmd/spoolfs, built once per test binary (lazily, so unit
// tests alone do not pay for it) by testsupport.Binary, in a directory
// every user may enter (tests run it as nobody).
func spoolfsBin(t *testing.T) string {
	t.Helper()
	return testsupport.Binary(t)
}

// requireBinary skips process tests in -short mode (unit tests only).
func requireBinary(t *testing.T) string {
	t.Helper()
	testsupport.SkipShort(t, "no process tests")
	return spoolfsBin(t)
}

// requireFUSE ends the test unless this process can mount FUSE as root
// (testsupport's CI rule: fails under CI=true); -short skips it.
func requireFUSE(t *testing.T) {
	t.Helper()
	testsupport.SkipShort(t, "no mounts")
	testsupport.RequireRoot(t, "the mount tests")
	testsupport.RequireMount(t)
}

// requireMount skips (or, with CI=true, fails) when this process cannot
// make FUSE mounts.
func requireMount(t *testing.T) string {
	t.Helper()
	bin := requireBinary(t)
	requireFUSE(t)
	return bin
}

// proc is a spoolfs process under test.
type proc struct {
	cmd    *exec.Cmd
	stderr *testsupport.Buffer
	done   chan struct{} // closed when it exited
}

// startSpoolfs starts the binary with args (as cred's user when non-nil);
// t.Cleanup kills it if it is still running.
func startSpoolfs(t *testing.T, cred *syscall.Credential, args ...string) *proc {
	t.Helper()
	p := &proc{stderr: &testsupport.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(spoolfsBin(t), args...)
	p.cmd.Stderr = p.stderr
	if cred != nil {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting spoolfs: %v", err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// waitExit waits for the process to end and returns its exit status.
func (p *proc) waitExit(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("spoolfs still running after %v; stderr:\n%s", timeout, p.stderr)
		return -1
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// newMountDir makes an empty directory under a base every user may
// enter. t.Cleanup detaches whatever is still mounted there, then removes
// the base (only if nothing is mounted any more).
func newMountDir(t *testing.T) string {
	t.Helper()
	base, err := os.MkdirTemp("", "spoolfs-node-"+strings.ReplaceAll(t.Name(), "/", "_")+"-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 8 { // at most as many as mountdev.PrepareMountPoint detaches
			if len(fuseMountsAt(t, dir)) == 0 {
				os.RemoveAll(base)
				return
			}
			t.Logf("cleanup: lazy unmount of %s", dir)
			unix.Unmount(dir, unix.MNT_DETACH)
		}
		t.Errorf("cleanup: %s is still mounted; left %s in place", dir, base)
	})
	return dir
}

// fuseMountsAt lists the FUSE mounts at dir.
func fuseMountsAt(t *testing.T, dir string) []mountdev.MountInfo {
	t.Helper()
	at, err := mountdev.MountsAt(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []mountdev.MountInfo
	for _, m := range at {
		if m.IsFUSE() {
			out = append(out, m)
		}
	}
	return out
}

// waitMounted waits until a FUSE mount is at dir and returns the topmost.
func waitMounted(t *testing.T, p *proc, dir string) mountdev.MountInfo {
	t.Helper()
	var top mountdev.MountInfo
	testsupport.WaitForErr(t, 15*time.Second, "a FUSE mount at "+dir, func() error {
		if at := fuseMountsAt(t, dir); len(at) > 0 {
			top = at[len(at)-1]
			return nil
		}
		if p.exited() {
			t.Fatalf("spoolfs exited (status %d) before mounting %s; stderr:\n%s", p.cmd.ProcessState.ExitCode(), dir, p.stderr)
		}
		return fmt.Errorf("not mounted; stderr:\n%s", p.stderr)
	})
	return top
}

// waitUnmounted waits until no FUSE mount is at dir.
func waitUnmounted(t *testing.T, dir string, timeout time.Duration) {
	t.Helper()
	testsupport.WaitFor(t, timeout, "no FUSE mount at "+dir, func() bool { return len(fuseMountsAt(t, dir)) == 0 })
}

// runAsNobody runs `sh -c script` as uid/gid 65534 and returns its combined
// output and error.
func runAsNobody(t *testing.T, script string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", script)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("sh -c %q as nobody: timed out", script)
	}
	return string(out), err
}
