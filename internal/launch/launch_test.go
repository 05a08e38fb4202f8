package launch

// Unit tests of launch.go, reap.go and unshare.go. They run RunChild in
// this process against /proc, which is always a mount point, so they need
// no FUSE. The process-level tests (spoolfs mount [--unshare] ... -- CMD
// as user nobody, a real FUSE mount inside) are node's launch_test.go.
//
// This test binary also plays the "fgcheck" role (chosen by launchRoleEnv
// in init): it prints whether it is in the foreground of its terminal.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spoolfs/spoolfs/internal/testsupport"
)

const launchRoleEnv = "SPOOLFS_LAUNCH_TEST_ROLE"

func init() {
	if os.Getenv(launchRoleEnv) == "fgcheck" {
		fmt.Println(inForegroundOfTerminal())
		os.Exit(0)
	}
}

// ---- unit tests: RunChild without FUSE ----

func runChildQuick(t *testing.T, ctx context.Context, script string, cfg ChildConfig) (int, string) {
	t.Helper()
	var out bytes.Buffer
	cfg.Stdout, cfg.Stderr = &out, &out
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 5 * time.Second
	}
	code, err := RunChild(ctx, "/proc", []string{"sh", "-c", script}, cfg)
	if err != nil {
		t.Fatalf("RunChild: %v (output %q)", err, out.String())
	}
	return code, out.String()
}

func TestRunChildExitStatus(t *testing.T) {
	for _, tc := range []struct {
		script string
		want   int
	}{
		{"exit 0", 0},
		{"exit 7", 7},
		{"kill -KILL $$", 128 + 9},
		{"kill -TERM $$", 128 + 15},
		{"kill -SEGV $$", 128 + 11},
	} {
		code, out := runChildQuick(t, context.Background(), tc.script, ChildConfig{})
		if code != tc.want {
			t.Errorf("%q: exit code %d, want %d (output %q)", tc.script, code, tc.want, out)
		}
	}
}

func TestRunChildPassesStdioAndEnv(t *testing.T) {
	t.Setenv("LAUNCH_TEST_VAR", "v1")
	t.Setenv(UnshareEnv, "mnt:[1]")
	cfg := ChildConfig{Stdin: strings.NewReader("from-stdin\n")}
	code, out := runChildQuick(t, context.Background(),
		`read l; echo "$l $LAUNCH_TEST_VAR marker=${`+UnshareEnv+`:-unset}"`, cfg)
	if code != 0 || out != "from-stdin v1 marker=unset\n" {
		t.Fatalf("code %d, output %q", code, out)
	}
}

// readyChild starts RunChild on a script that prints "ready" once its traps
// are set, and returns the channel of RunChild's result once "ready" came.
//
// RunChild makes this process a child subreaper and stops every child of it
// that appears while it runs, so a RunChild left running by a failed test
// would kill the processes of the tests after it (a go build, a mount): the
// cleanup stops it (ctx is cancelled, StopGrace is short) and waits for it.
func readyChild(t *testing.T, ctx context.Context, script string, cfg ChildConfig) <-chan childResult {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errOut := &testsupport.Buffer{}
	cfg.Stdout, cfg.Stderr = pw, errOut
	if cfg.StopGrace == 0 {
		cfg.StopGrace = 2 * time.Second
	}
	res := make(chan childResult, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		code, err := RunChild(ctx, "/proc", []string{"sh", "-c", script}, cfg)
		pw.Close()
		res <- childResult{code, err}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(30 * time.Second):
			t.Errorf("RunChild still runs 30s after its test ended")
		}
		pr.Close()
	})
	line, err := bufio.NewReader(pr).ReadString('\n')
	if line != "ready\n" {
		cancel()
		<-finished
		t.Fatalf("child did not get ready: %q, %v (stderr %q)", line, err, errOut.String())
	}
	return res
}

// idleLoop keeps a shell waiting for a trapped signal. Not `sleep 1000 &
// wait $!`: a background job forked just before the shell exits may not
// have exec'd yet, and then catches the SIGTERM meant for it with the
// shell's trap handler and loses it (it would live on until SIGKILL).
const idleLoop = `while :; do sleep 0.05; done`

type childResult struct {
	code int
	err  error
}

func waitResult(t *testing.T, res <-chan childResult, within time.Duration) childResult {
	t.Helper()
	select {
	case r := <-res:
		return r
	case <-time.After(within):
		t.Fatalf("RunChild did not return within %v", within)
		return childResult{}
	}
}

func TestRunChildForwardsSignals(t *testing.T) {
	for _, tc := range []struct {
		sig  syscall.Signal
		name string
		want int
	}{
		{syscall.SIGHUP, "HUP", 31},
		{syscall.SIGTERM, "TERM", 32},
		{syscall.SIGINT, "INT", 33},
	} {
		if ignoredByProcess(t, tc.sig) {
			// A non-interactive shell cannot trap a signal that was
			// ignored when it started (POSIX), and the child inherits
			// this process's ignored signals: e.g. a test binary run as
			// a background job of a shell without job control.
			t.Logf("SIG%s is ignored by this test process: the shell could not trap it; case skipped", tc.name)
			continue
		}
		sigs := make(chan os.Signal, 1)
		script := fmt.Sprintf(`trap 'exit %d' %s; echo ready; %s`, tc.want, tc.name, idleLoop)
		res := readyChild(t, context.Background(), script, ChildConfig{Signals: sigs})
		sigs <- tc.sig
		if r := waitResult(t, res, 10*time.Second); r.err != nil || r.code != tc.want {
			t.Errorf("SIG%s: code %d err %v, want %d", tc.name, r.code, r.err, tc.want)
		}
	}
}

// ignoredByProcess reads whether sig is ignored by this process now (the
// kernel's disposition, which a child inherits across exec).
func ignoredByProcess(t *testing.T, sig syscall.Signal) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if hex, ok := strings.CutPrefix(line, "SigIgn:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return mask&(1<<(uint(sig)-1)) != 0
		}
	}
	t.Fatal("no SigIgn in /proc/self/status")
	return false
}

func TestRunChildStopOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := readyChild(t, ctx, `trap 'exit 0' TERM; echo ready; `+idleLoop, ChildConfig{})
	cancel()
	if r := waitResult(t, res, 10*time.Second); r.err != nil || r.code != 0 {
		t.Fatalf("code %d err %v, want 0: the child should get SIGTERM and exit", r.code, r.err)
	}
}

func TestRunChildGraceThenKill(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const grace = 300 * time.Millisecond
	res := readyChild(t, ctx, `trap '' TERM; echo ready; while :; do sleep 0.05; done`, ChildConfig{StopGrace: grace})
	start := time.Now()
	cancel()
	r := waitResult(t, res, 10*time.Second)
	if r.err != nil || r.code != 128+9 {
		t.Fatalf("code %d err %v, want 137 (SIGKILL after the grace period)", r.code, r.err)
	}
	if el := time.Since(start); el < grace {
		t.Fatalf("killed after %v, before the grace period %v", el, grace)
	}
}

func TestRunChildStopsOrphans(t *testing.T) {
	// The child leaves a process that ignores SIGTERM and one that does not.
	pidFile := filepath.Join(t.TempDir(), "pids")
	script := fmt.Sprintf(`sleep 1000 & echo $! > %[1]s; sh -c 'trap "" TERM; while :; do sleep 0.05; done' & echo $! >> %[1]s; exit 5`, pidFile)
	code, out := runChildQuick(t, context.Background(), script, ChildConfig{StopGrace: 300 * time.Millisecond})
	if code != 5 {
		t.Fatalf("code %d, want 5 (output %q)", code, out)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		if err := unix.Kill(pid, 0); !errors.Is(err, unix.ESRCH) {
			t.Errorf("process %d left by the child still exists (kill 0: %v)", pid, err)
		}
	}
}

func TestRunChildMountNotReady(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "started")
	_, err := RunChild(context.Background(), dir, []string{"touch", marker}, ChildConfig{ReadyTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrMountNotReady) {
		t.Fatalf("err %v, want ErrMountNotReady", err)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("the child ran although the mount was not ready")
	}
	if _, err := RunChild(context.Background(), "/proc", []string{"/nonexistent/cmd"}, ChildConfig{}); err == nil {
		t.Fatalf("no error for a command that does not exist")
	}
}

func TestWithoutUnshareFlag(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"spoolfs mount --unshare --local v /d", "spoolfs mount --local v /d"},
		{"spoolfs mount -unshare v /d", "spoolfs mount v /d"},
		{"spoolfs mount --unshare=true v /d", "spoolfs mount v /d"},
		{"spoolfs mount --unshared v /d", "spoolfs mount --unshared v /d"},
		{"spoolfs mount v /d -- sh --unshare", "spoolfs mount v /d -- sh --unshare"},
		{"spoolfs mount --unshare v /d -- unshare --unshare", "spoolfs mount v /d -- unshare --unshare"},
	} {
		got := strings.Join(WithoutUnshareFlag(strings.Fields(tc.in)), " ")
		if got != tc.want {
			t.Errorf("WithoutUnshareFlag(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestChildEnv(t *testing.T) {
	got := ChildEnv([]string{"A=1", UnshareEnv + "=1", UnshareEnv + "X=2"})
	if !slices.Equal(got, []string{"A=1", UnshareEnv + "X=2"}) {
		t.Fatalf("ChildEnv: %q", got)
	}
}

func TestIdentityMap(t *testing.T) {
	m, err := identityMap("/proc/self/uid_map")
	if err != nil || len(m) == 0 {
		t.Fatalf("identityMap: %v %v", m, err)
	}
	for _, e := range m {
		if e.ContainerID != e.HostID || e.Size <= 0 {
			t.Fatalf("not an identity entry: %+v", e)
		}
	}
}

func TestEnterUnsharedRefusesHostNamespace(t *testing.T) {
	ns, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(UnshareEnv, ns)
	if err := EnterUnshared(); err == nil {
		t.Fatal("EnterUnshared made the mounts of this namespace private")
	}
}

// TestForegroundOfTerminal checks the predicate that keeps a Ctrl-C from
// reaching the child twice: true for the foreground process group of a
// terminal (here a pty), false without a controlling terminal.
func TestForegroundOfTerminal(t *testing.T) {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		testsupport.Unavailable(t, "no pty: %v", err)
	}
	defer master.Close()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	for _, withTTY := range []bool{true, false} {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), launchRoleEnv+"=fgcheck", "GORACE=atexit_sleep_ms=0")
		var out bytes.Buffer
		cmd.Stdout = &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if withTTY {
			cmd.Stdin = tty
			cmd.SysProcAttr.Setctty = true // Ctty 0: stdin
		}
		if err := cmd.Run(); err != nil {
			t.Fatalf("tty %v: %v", withTTY, err)
		}
		if got := strings.TrimSpace(out.String()); got != strconv.FormatBool(withTTY) {
			t.Errorf("with a controlling terminal %v: inForegroundOfTerminal = %s", withTTY, got)
		}
	}
}
