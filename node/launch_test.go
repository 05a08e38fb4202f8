package node

// Process-level tests of `spoolfs mount ... -- CMD` (internal/launch has
// the unit tests of RunChild, reaping and unshare). They run the spoolfs
// binary (spoolfsBin, built by main_test.go) as user nobody, with --unshare
// or under unshare(1), a real FUSE mount inside and a child command: see
// startLaunch.
//
// This test binary also plays the "devfuse" role (chosen by launchRoleEnv in
// init, so it needs no TestMain of its own): run as root in a private mount
// namespace, it bind-mounts a mode 0666 copy of the /dev/fuse device node
// over /dev/fuse, drops to uid/gid 65534 and execs the rest of its
// arguments. The host's /dev/fuse keeps its mode: other tests running at the
// same time that chmod and restore it cannot race with this one.

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

	"github.com/spoolfs/spoolfs/internal/launch"
	"github.com/spoolfs/spoolfs/internal/testsupport"
)

const launchRoleEnv = "SPOOLFS_LAUNCH_TEST_ROLE"

// idleLoop keeps a shell waiting for a trapped signal (not `sleep &
// wait`: see internal/launch's idleLoop).
const idleLoop = `while :; do sleep 0.05; done`

func init() {
	if os.Getenv(launchRoleEnv) == "devfuse" {
		os.Exit(launchDevFuse(os.Args[1:]))
	}
}

// ---- integration: spoolfs mount --unshare as user nobody ----

// launchEnv is what an integration test needs: root (to set up /dev/fuse
// for nobody) and /dev/fuse. Without them the test fails in CI and skips
// elsewhere.
func launchEnv(t *testing.T) {
	t.Helper()
	testsupport.RequireRoot(t, "giving user nobody access to /dev/fuse")
	testsupport.RequireMount(t)
}

// launchPublicDir is a temporary directory that user nobody can enter, with
// every parent directory searchable.
func launchPublicDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// launchRun is one `spoolfs mount --unshare --local` run as user nobody.
type launchRun struct {
	cmd    *exec.Cmd
	out    *testsupport.Buffer // stdout: the child's
	errOut *testsupport.Buffer // stderr: spoolfs's log and the child's errors
	mnt    string
	token  string // in the child's command line, to find what is left
	toTest *os.File
	toKid  *os.File
}

// How startLaunch enters the namespaces.
const (
	viaFlag    = "--unshare"
	viaUnshare = "unshare -U -m -r --"
)

// startLaunch starts spoolfs as nobody, entering new namespaces via --unshare
// or unshare(1), mounting a fresh directory, and the child script. The
// script may use $MNT, and the fifos $TO_TEST and $TO_KID to talk with the
// test.
func startLaunch(t *testing.T, via, script string) *launchRun {
	t.Helper()
	launchEnv(t)
	bin := requireMount(t)
	pub := launchPublicDir(t)
	mnt := filepath.Join(pub, "mnt")
	fifoTest, fifoKid := filepath.Join(pub, "to-test"), filepath.Join(pub, "to-kid")
	for _, d := range []string{mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{fifoTest, fifoKid} {
		if err := unix.Mkfifo(f, 0o666); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, 0o666); err != nil {
			t.Fatal(err)
		}
	}
	token := fmt.Sprintf("launch-token-%d-%d", os.Getpid(), time.Now().UnixNano())
	full := fmt.Sprintf("MNT=%s TO_TEST=%s TO_KID=%s; : %s; %s", mnt, fifoTest, fifoKid, token, script)
	r := &launchRun{out: &testsupport.Buffer{}, errOut: &testsupport.Buffer{}, mnt: mnt, token: token}
	args := []string{bin, "mount", "--local", "--log-level", "warn", "--stop-grace", "2s", "vol", mnt, "--", "sh", "-c", full}
	switch via {
	case viaFlag:
		args = slices.Insert(args, 2, "--unshare")
	case viaUnshare:
		unshare := testsupport.RequireCmd(t, "unshare")
		args = append([]string{unshare, "-U", "-m", "-r", "--"}, args...)
	}
	r.cmd = exec.Command(os.Args[0], append([]string{pub}, args...)...)
	r.cmd.Env = append(os.Environ(), launchRoleEnv+"=devfuse", "LAUNCH_TEST_TOKEN="+token)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.errOut
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cleanup(t) })
	// Opening a fifo blocks until the other end opens: open both from
	// goroutines so that a spoolfs that dies early cannot hang the test.
	r.toTest = openFifo(t, fifoTest, os.O_RDONLY, r)
	return r
}

func openFifo(t *testing.T, path string, flag int, r *launchRun) *os.File {
	t.Helper()
	type res struct {
		f   *os.File
		err error
	}
	ch := make(chan res, 1)
	go func() {
		f, err := os.OpenFile(path, flag, 0)
		ch <- res{f, err}
	}()
	exited := make(chan struct{})
	go func() {
		for processAlive(r.cmd.Process.Pid) {
			time.Sleep(10 * time.Millisecond)
		}
		close(exited)
	}()
	select {
	case x := <-ch:
		if x.err != nil {
			t.Fatal(x.err)
		}
		return x.f
	case <-exited:
		// Unblock the opener so its goroutine ends.
		if f, err := os.OpenFile(path, os.O_RDWR, 0); err == nil {
			f.Close()
		}
		t.Fatalf("spoolfs exited before the child opened %s: %s", path, r.errOut.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("the child did not open %s within 30s: %s", path, r.errOut.String())
	}
	return nil
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && len(b) > i+2 && b[i+2] != 'Z'
}

// readLine reads one line the child wrote to $TO_TEST.
func (r *launchRun) readLine(t *testing.T) string {
	t.Helper()
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := bufio.NewReader(r.toTest).ReadString('\n')
		ch <- res{s, err}
	}()
	select {
	case x := <-ch:
		if x.err != nil {
			t.Fatalf("read from the child: %v; stderr: %s", x.err, r.errOut.String())
		}
		return strings.TrimSpace(x.s)
	case <-time.After(30 * time.Second):
		t.Fatalf("no line from the child within 30s: %s", r.errOut.String())
		return ""
	}
}

// wait waits for spoolfs to exit and returns its exit code.
func (r *launchRun) wait(t *testing.T) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("spoolfs did not exit within 60s: %s", r.errOut.String())
	}
	return launch.ExitCode(r.cmd.ProcessState)
}

// cleanup kills what is left and lazily unmounts the directory if a mount
// leaked to this namespace.
func (r *launchRun) cleanup(t *testing.T) {
	if r.cmd.ProcessState == nil {
		_ = r.cmd.Process.Kill()
		_, _ = r.cmd.Process.Wait()
	}
	for _, pid := range pidsWith(r.token) {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	if mountedAt(t, os.Getpid(), r.mnt) {
		_ = unix.Unmount(r.mnt, unix.MNT_DETACH)
	}
	for _, f := range []*os.File{r.toTest, r.toKid} {
		if f != nil {
			f.Close()
		}
	}
}

// assertNothingLeft checks that no process of the run is left and that no
// mount of it is in this namespace.
func (r *launchRun) assertNothingLeft(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := slices.DeleteFunc(pidsWith(r.token), func(pid int) bool { return !processAlive(pid) })
		left = append(left, slices.DeleteFunc(pidsWith(r.mnt), func(pid int) bool { return !processAlive(pid) })...)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left after spoolfs exited: %v", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if mountedAt(t, os.Getpid(), r.mnt) {
		t.Fatalf("a mount is left at %s in the host namespace", r.mnt)
	}
}

// pidsWith lists the processes whose command line or environment contains
// s (the runs put their token in the environment, which every descendant
// inherits).
func pidsWith(s string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile("/proc/" + e.Name() + "/" + f)
			if err == nil && bytes.Contains(b, []byte(s)) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// mountedAt reports whether pid's mount namespace has a mount at dir.
func mountedAt(t *testing.T, pid int, dir string) bool {
	t.Helper()
	return len(mountinfoAt(t, pid, dir)) > 0
}

// fuseMountAt reports whether pid's namespace has a fuse.spoolfs mount at dir.
func fuseMountAt(t *testing.T, pid int, dir string) bool {
	t.Helper()
	for _, line := range mountinfoAt(t, pid, dir) {
		if strings.Contains(line, " - fuse.spoolfs spoolfs:vol ") {
			return true
		}
	}
	return false
}

// mountinfoAt returns the lines of pid's /proc/PID/mountinfo whose mount
// point (the fifth field) is dir.
func mountinfoAt(t *testing.T, pid int, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatalf("mountinfo of %d: %v", pid, err)
	}
	var at []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			at = append(at, line)
		}
	}
	return at
}

func TestLaunchUnshareAsNobody(t *testing.T) {
	for _, via := range []string{viaFlag, viaUnshare} {
		t.Run(strings.Fields(via)[0], func(t *testing.T) { testLaunchAsNobody(t, via) })
	}
}

func testLaunchAsNobody(t *testing.T, via string) {
	r := startLaunch(t, via, `echo hi > "$MNT/f" && cat "$MNT/f" && echo "$$ $(id -u)" > "$TO_TEST" && read x < "$TO_KID" && exit 7`)
	fields := strings.Fields(r.readLine(t))
	if len(fields) != 2 || fields[1] != "0" {
		t.Fatalf("child says %q, want its pid and uid 0", fields)
	}
	kid, _ := strconv.Atoi(fields[0])
	// While the child runs: the mount is in its namespace, not in the host's
	// nor in the one spoolfs was started in.
	if !fuseMountAt(t, kid, r.mnt) {
		t.Errorf("no fuse.spoolfs mount at %s in the child's namespace", r.mnt)
	}
	// With --unshare the process started is the outer spoolfs, in the
	// namespace spoolfs was started in; unshare(1) moves itself.
	if mountedAt(t, os.Getpid(), r.mnt) || (via == viaFlag && mountedAt(t, r.cmd.Process.Pid, r.mnt)) {
		t.Errorf("the mount at %s leaked out of spoolfs's namespaces", r.mnt)
	}
	if st, err := os.Stat("/proc/" + fields[0]); err != nil || st.Sys().(*syscall.Stat_t).Uid != 65534 {
		t.Errorf("the child does not run as host uid 65534: %v", err)
	}
	checkProbe(t, r, kid)
	r.toKid = openFifo(t, filepath.Join(filepath.Dir(r.mnt), "to-kid"), os.O_WRONLY, r)
	r.toKid.WriteString("go\n")
	r.toKid.Close()
	if code := r.wait(t); code != 7 {
		t.Fatalf("exit code %d, want 7; stderr: %s", code, r.errOut.String())
	}
	if r.out.String() != "hi\n" {
		t.Errorf("output %q, want hi", r.out.String())
	}
	r.assertNothingLeft(t)
	if _, err := launch.ProbeMount(context.Background(), r.mnt, time.Second); !errors.Is(err, launch.ErrNoMount) {
		t.Errorf("probe after the end: %v, want launch.ErrNoMount", err)
	}
}

// checkProbe runs the liveness probe from outside spoolfs's namespaces, as
// a container's exec probe does, as the same user (nobody: FUSE refuses
// other users, root included, without allow_other). With the server
// stopped (SIGSTOP), it must fail.
func checkProbe(t *testing.T, r *launchRun, kid int) {
	t.Helper()
	if out, err := runProbe(t, r, 5*time.Second); err != nil {
		t.Errorf("probe as nobody: %v: %s", err, out)
	}
	server, ok := parentPid(kid)
	if !ok {
		t.Fatalf("no parent for the child %d", kid)
	}
	if err := unix.Kill(server, unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer unix.Kill(server, unix.SIGCONT)
	out, err := runProbe(t, r, 300*time.Millisecond)
	if err == nil || !strings.Contains(string(out), "did not answer") {
		t.Errorf("probe with the server %d stopped: %v: %s", server, err, out)
	}
}

func runProbe(t *testing.T, r *launchRun, timeout time.Duration) ([]byte, error) {
	t.Helper()
	probe := exec.Command(spoolfsBin(t), "probe", "--timeout", timeout.String(), r.mnt)
	probe.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	return probe.CombinedOutput()
}

func TestLaunchChildKilledBySignal(t *testing.T) {
	r := startLaunch(t, viaFlag, `echo > "$TO_TEST"; kill -TERM $$`)
	r.readLine(t)
	if code := r.wait(t); code != 128+15 {
		t.Fatalf("exit code %d, want 143; stderr: %s", code, r.errOut.String())
	}
	r.assertNothingLeft(t)
}

func TestLaunchStopStopsChildFirst(t *testing.T) {
	// The child handles SIGTERM by writing to and reading from the mount:
	// it works only if spoolfs stops the child before it unmounts. It also
	// leaves a process behind, which spoolfs must stop.
	r := startLaunch(t, viaFlag, `trap 'echo bye > "$MNT/g"; cat "$MNT/g"; exit 0' TERM; echo > "$TO_TEST"; `+idleLoop)
	r.readLine(t)
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := r.wait(t); code != 0 {
		t.Fatalf("exit code %d, want 0; stderr: %s", code, r.errOut.String())
	}
	if !strings.Contains(r.out.String(), "bye\n") {
		t.Errorf("the child could not use the mount while stopping: %q", r.out.String())
	}
	r.assertNothingLeft(t)
}

// ---- the roles of this binary ----

// launchDevFuse: ARGS = DIR BIN BIN-ARGS... Runs as root in a private mount
// namespace (the test starts it with CLONE_NEWNS, Go makes / private).
func launchDevFuse(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "devfuse: want DIR BIN ARGS...")
		return 2
	}
	var st unix.Stat_t
	if err := unix.Stat("/dev/fuse", &st); err != nil {
		fmt.Fprintln(os.Stderr, "devfuse:", err)
		return 2
	}
	node := filepath.Join(args[0], "fuse")
	steps := []func() error{
		func() error { return unix.Mknod(node, unix.S_IFCHR|0o666, int(st.Rdev)) },
		func() error { return os.Chmod(node, 0o666) },
		func() error { return unix.Mount(node, "/dev/fuse", "", unix.MS_BIND, "") },
		func() error { return syscall.Setgroups(nil) },
		func() error { return syscall.Setgid(65534) },
		func() error { return syscall.Setuid(65534) },
		func() error { return os.Unsetenv(launchRoleEnv) },
		func() error { return syscall.Exec(args[1], args[1:], os.Environ()) },
	}
	for i, f := range steps {
		if err := f(); err != nil {
			fmt.Fprintf(os.Stderr, "devfuse: step %d: %v\n", i, err)
			return 2
		}
	}
	return 0
}

func TestLaunchOuterKilled(t *testing.T) {
	// kill -9 of the spoolfs the user started: the one inside the
	// namespaces gets SIGTERM (parent death signal), stops the child,
	// unmounts and exits; nothing is left.
	r := startLaunch(t, viaFlag, `trap 'exit 0' TERM; echo > "$TO_TEST"; `+idleLoop)
	r.readLine(t)
	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := r.wait(t); code != 128+9 {
		t.Fatalf("exit code %d, want 137", code)
	}
	r.assertNothingLeft(t)
}

// TestLaunchErrors: as root (no namespaces), what goes wrong around -- CMD.
func TestLaunchErrors(t *testing.T) {
	bin := requireMount(t)
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "child-ran")
	run := func(args ...string) (int, string) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"mount", "--local", "--log-level", "error"}, args...)...)
		var errOut bytes.Buffer
		cmd.Stderr = &errOut
		done := make(chan struct{})
		go func() { cmd.Run(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatalf("%q did not exit", args)
		}
		if mountedAt(t, os.Getpid(), mnt) {
			unix.Unmount(mnt, unix.MNT_DETACH)
			t.Fatalf("%q left a mount at %s", args, mnt)
		}
		return launch.ExitCode(cmd.ProcessState), strings.TrimSpace(errOut.String())
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"mount point missing", []string{"v", filepath.Join(dir, "nope"), "--", "touch", marker}, 1, "no such directory"},
		{"nothing after --", []string{"v", mnt, "--"}, 2, "nothing after --"},
		{"command not found", []string{"v", mnt, "--", filepath.Join(dir, "no-such-cmd")}, 127, "no such file"},
		{"not executable", []string{"v", mnt, "--", dir}, 126, "permission denied"},
		{"exit status", []string{"v", mnt, "--", "sh", "-c", "touch " + mnt + "/x && exit 9"}, 9, ""},
	} {
		code, msg := run(tc.args...)
		if code != tc.code || !strings.Contains(msg, tc.msg) || strings.Count(msg, "\n") > 0 && tc.msg != "" {
			t.Errorf("%s: exit %d, stderr %q; want %d and one line with %q", tc.name, code, msg, tc.code, tc.msg)
		}
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("the command ran although the mount failed")
	}
}

// TestLaunchUnshareAsRootMapsAllIDs: root (CAP_SETUID/CAP_SETGID) with
// --unshare maps every id onto itself, so the command may switch users, as
// exim does; -o allow_other lets them use the mount.
func TestLaunchUnshareAsRootMapsAllIDs(t *testing.T) {
	bin := requireMount(t)
	setpriv := testsupport.RequireCmd(t, "setpriv")
	mnt := filepath.Join(launchPublicDir(t), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`cat /proc/self/uid_map; echo hi > %[1]s/f; chmod 644 %[1]s/f; %[2]s --reuid 65534 --regid 65534 --clear-groups sh -c 'id -u; cat %[1]s/f'`, mnt, setpriv)
	cmd := exec.Command(bin, "mount", "--unshare", "--local", "--log-level", "warn", "-o", "allow_other", "v", mnt, "--", "sh", "-c", script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	f := strings.Fields(string(out))
	if len(f) != 5 || f[0] != "0" || f[1] != "0" || f[2] != "4294967295" || f[3] != "65534" || f[4] != "hi" {
		t.Fatalf("output %q: want the identity map of every id, then uid 65534 reading the mount", out)
	}
	if mountedAt(t, os.Getpid(), mnt) {
		t.Fatalf("the mount leaked to the host namespace")
	}
}

// TestLaunchVolumeGoneStopsChild: when the volume is unmounted from outside
// while the command runs, the command is stopped (SIGTERM) and spoolfs
// exits with its status.
func TestLaunchVolumeGoneStopsChild(t *testing.T) {
	bin := requireMount(t)
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	cmd := exec.Command(bin, "mount", "--local", "--log-level", "warn", "v", mnt, "--",
		"sh", "-c", `trap 'exit 5' TERM; echo ready; `+idleLoop)
	cmd.Stdout = pw
	errOut := &testsupport.Buffer{}
	cmd.Stderr = errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if mountedAt(t, os.Getpid(), mnt) {
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	r := &launchRun{cmd: cmd, errOut: errOut, toTest: pr}
	if line := r.readLine(t); line != "ready" {
		t.Fatalf("child said %q", line)
	}
	if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if code := r.wait(t); code != 5 {
		t.Fatalf("exit code %d, want 5 (the child's, after SIGTERM); stderr: %s", code, errOut.String())
	}
}

// parentPid reads the parent pid of pid from /proc/PID/stat ("pid (comm)
// state ppid ...": comm may hold spaces and parentheses).
func parentPid(pid int) (int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 2 {
		return 0, false
	}
	p, err := strconv.Atoi(f[1])
	return p, err == nil
}
