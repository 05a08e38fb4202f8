package node

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/mountdev"
)

// The process-level tests run the real binary, built once (lazily, so unit
// tests alone do not pay for it) into a temporary directory that TestMain
// removes at the end. Other tests of package node may use spoolfsBin too.
var (
	binDir    string
	binOnce   sync.Once
	binPath   string
	binErr    error
	binOutput []byte
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// spoolfsBin builds cmd/spoolfs once and returns the binary's path (in a
// directory every user may enter, for tests that run it as nobody).
func spoolfsBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "spoolfs-node-bin-")
		if binErr != nil {
			return
		}
		if binErr = os.Chmod(binDir, 0o755); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "spoolfs")
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = "/usr/local/go/bin/go"
		}
		cmd := exec.Command(goTool, "build", "-o", binPath, "github.com/spoolfs/spoolfs/cmd/spoolfs")
		binOutput, binErr = cmd.CombinedOutput()
	})
	if binErr != nil {
		t.Fatalf("building spoolfs: %v\n%s", binErr, binOutput)
	}
	return binPath
}

// requireBinary skips process tests in -short mode (unit tests only).
func requireBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no process tests")
	}
	return spoolfsBin(t)
}

// requireFUSE skips (or fails with CI=true) when this process cannot mount.
func requireFUSE(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no mounts")
	}
	why := ""
	if os.Geteuid() != 0 {
		why = "not root"
	} else if _, err := os.Stat("/dev/fuse"); err != nil {
		why = "no /dev/fuse"
	}
	if why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot mount FUSE (%s) and CI=true", why)
		}
		t.Skipf("cannot mount FUSE: %s", why)
	}
}

// requireMount skips (or, with CI=true, fails) when this process cannot
// make FUSE mounts.
func requireMount(t *testing.T) string {
	t.Helper()
	bin := requireBinary(t)
	requireFUSE(t)
	return bin
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a spoolfs process under test.
type proc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{} // closed when it exited
}

// startSpoolfs starts the binary with args (as cred's user when non-nil);
// t.Cleanup kills it if it is still running.
func startSpoolfs(t *testing.T, cred *syscall.Credential, args ...string) *proc {
	t.Helper()
	p := &proc{stderr: &syncBuffer{}, done: make(chan struct{})}
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
	deadline := time.Now().Add(15 * time.Second)
	for {
		if at := fuseMountsAt(t, dir); len(at) > 0 {
			return at[len(at)-1]
		}
		if p.exited() {
			t.Fatalf("spoolfs exited (status %d) before mounting %s; stderr:\n%s", p.cmd.ProcessState.ExitCode(), dir, p.stderr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not mounted after 15s; stderr:\n%s", dir, p.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitUnmounted waits until no FUSE mount is at dir.
func waitUnmounted(t *testing.T, dir string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for len(fuseMountsAt(t, dir)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s still mounted after %v", dir, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
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
