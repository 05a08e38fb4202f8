package testsupport

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Run(m)) }

// fakeTB records how a helper ended a test: Fatal and Skip end the
// goroutine as testing.T's do.
type fakeTB struct {
	testing.TB // nil: a method not overridden here panics
	mu         sync.Mutex
	failed     bool
	skipped    bool
	msg        string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) end(failed bool, msg string) {
	f.mu.Lock()
	f.failed, f.skipped, f.msg = failed, !failed, msg
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Fatal(args ...any)                 { f.end(true, fmt.Sprint(args...)) }
func (f *fakeTB) Fatalf(format string, args ...any) { f.end(true, fmt.Sprintf(format, args...)) }
func (f *fakeTB) Skip(args ...any)                  { f.end(false, fmt.Sprint(args...)) }
func (f *fakeTB) Skipf(format string, args ...any)  { f.end(false, fmt.Sprintf(format, args...)) }

// run calls fn with a fake TB in its own goroutine (Goexit ends it) and
// returns the TB once fn returned or ended the test.
func run(fn func(tb testing.TB)) *fakeTB {
	f := &fakeTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f
}

// simulateNoFUSE makes this machine look unable to mount for one test.
func simulateNoFUSE(t *testing.T) {
	old := mountProblem
	mountProblem = func() string { return "simulated: no /dev/fuse" }
	t.Cleanup(func() { mountProblem = old })
}

// TestRequireMountFailsInCI: with CI=true a machine that cannot mount
// fails the test with the reason; without it, the test skips with it.
func TestRequireMountFailsInCI(t *testing.T) {
	simulateNoFUSE(t)
	for _, tc := range []struct {
		ci         string
		fail, skip bool
	}{
		{ci: "true", fail: true},
		{ci: "", skip: true},
		{ci: "false", skip: true},
	} {
		t.Setenv("CI", tc.ci)
		f := run(func(tb testing.TB) { RequireMount(tb) })
		if f.failed != tc.fail || f.skipped != tc.skip {
			t.Errorf("CI=%q: failed %v skipped %v, want %v %v", tc.ci, f.failed, f.skipped, tc.fail, tc.skip)
		}
		if !strings.Contains(f.msg, "simulated: no /dev/fuse") {
			t.Errorf("CI=%q: message %q does not say why", tc.ci, f.msg)
		}
		if tc.fail && !strings.Contains(f.msg, "CI=true") {
			t.Errorf("CI=true: message %q does not say CI made it fail", f.msg)
		}
	}
}

// TestRequireMountPasses: a machine that can mount lets the test go on.
func TestRequireMountPasses(t *testing.T) {
	old := mountProblem
	mountProblem = func() string { return "" }
	t.Cleanup(func() { mountProblem = old })
	t.Setenv("CI", "true")
	if f := run(func(tb testing.TB) { RequireMount(tb) }); f.failed || f.skipped {
		t.Fatalf("ended the test: %q", f.msg)
	}
}

// TestRequireRootAndCmdFollowTheCIRule: the siblings of RequireMount end
// the test the same way.
func TestRequireRootAndCmdFollowTheCIRule(t *testing.T) {
	old := euid
	euid = func() int { return 1000 }
	t.Cleanup(func() { euid = old })
	t.Setenv("CI", "true")
	for name, fn := range map[string]func(testing.TB){
		"root": func(tb testing.TB) { RequireRoot(tb, "mounting tmpfs") },
		"cmd":  func(tb testing.TB) { RequireCmd(tb, "no-such-command-spoolfs") },
		"cpus": func(tb testing.TB) { RequireCPUs(tb, 1<<20) },
	} {
		if f := run(fn); !f.failed {
			t.Errorf("%s: not failed under CI=true (skipped %v: %q)", name, f.skipped, f.msg)
		}
	}
	if f := run(func(tb testing.TB) { RequireCmd(tb, "sh") }); f.failed || f.skipped {
		t.Errorf("sh is on the PATH, yet: %q", f.msg)
	}
}

// TestWaitForFailsWithWhat: on timeout WaitFor fails with what it waited
// for, and WaitForErr with the last state too.
func TestWaitForFailsWithWhat(t *testing.T) {
	f := run(func(tb testing.TB) {
		WaitFor(tb, 20*time.Millisecond, "the moon to turn blue", func() bool { return false })
	})
	if !f.failed || !strings.Contains(f.msg, "the moon to turn blue") {
		t.Errorf("WaitFor: failed %v, message %q", f.failed, f.msg)
	}
	n := 0
	f = run(func(tb testing.TB) {
		WaitForErr(tb, 20*time.Millisecond, "three replicas", func() error {
			n++
			return fmt.Errorf("%d replicas hold lsn 7 (try %d)", 2, n)
		})
	})
	if !f.failed || !strings.Contains(f.msg, "three replicas") || !strings.Contains(f.msg, fmt.Sprintf("(try %d)", n)) {
		t.Errorf("WaitForErr: failed %v, message %q, want the last state (try %d)", f.failed, f.msg, n)
	}
}

// TestWaitForReturnsWhenTrue: a condition that comes true ends the wait
// without failing, however long the timeout.
func TestWaitForReturnsWhenTrue(t *testing.T) {
	n := 0
	f := run(func(tb testing.TB) { WaitFor(tb, time.Hour, "the third call", func() bool { n++; return n == 3 }) })
	if f.failed || f.skipped || n != 3 {
		t.Fatalf("failed %v skipped %v after %d calls: %q", f.failed, f.skipped, n, f.msg)
	}
	if err := Poll(0, func() error { return errors.New("never") }); err == nil || err.Error() != "never" {
		t.Fatalf("Poll with no time: %v, want the check's error", err)
	}
}

// TestBinaryOnce: Binary builds once per set of flags and the binary runs.
func TestBinaryOnce(t *testing.T) {
	SkipShort(t, "builds spoolfs")
	a := Binary(t)
	if b := Binary(t); b != a {
		t.Fatalf("second call built again: %s, then %s", a, b)
	}
	if st, err := os.Stat(a); err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("binary %s: %v %v", a, st, err)
	}
}

// TestCBinaryOnce: CBinary compiles once per name, the program runs, and
// a compile error fails with gcc's output.
func TestCBinaryOnce(t *testing.T) {
	src := filepath.Join(t.TempDir(), "hello.c")
	if err := os.WriteFile(src, []byte("#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := CBinary(t, "hello", "-Wall", src)
	if b := CBinary(t, "hello", "-Wall", src); b != a {
		t.Fatalf("second call built again: %s, then %s", a, b)
	}
	if out, err := exec.Command(a).Output(); err != nil || string(out) != "hello\n" {
		t.Fatalf("%s: %q %v", a, out, err)
	}
	bad := filepath.Join(filepath.Dir(src), "bad.c")
	if err := os.WriteFile(bad, []byte("int main(void) { return undeclared; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := run(func(tb testing.TB) { CBinary(tb, "bad", bad) })
	if !f.failed || !strings.Contains(f.msg, "undeclared") {
		t.Fatalf("a compile error: failed=%v %q", f.failed, f.msg)
	}
}

// TestFUSEConnAndUnescape: mountinfo's escapes are undone, and a
// directory with no FUSE mount has no connection.
func TestFUSEConnAndUnescape(t *testing.T) {
	if got := unescape(`/tmp/with\040space\134x`); got != `/tmp/with space\x` {
		t.Fatalf("unescape: %q", got)
	}
	if c := FUSEConn(t.TempDir()); c != "" {
		t.Fatalf("a fresh directory has FUSE connection %q", c)
	}
	if len(mounts()) == 0 {
		t.Fatal("no mount listed: /proc/self/mountinfo unread")
	}
	AbortFUSE(t, "") // nothing to do, nothing logged
}
