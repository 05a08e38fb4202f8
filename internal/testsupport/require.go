package testsupport

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"
)

// CI says whether this run is in CI (CI=true), where a test that cannot
// run fails instead of skipping.
func CI() bool { return os.Getenv("CI") == "true" }

// Unavailable ends a test that cannot run here: t.Fatal under CI=true,
// t.Skip otherwise, with the reason either way.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	why := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatalf("cannot run here, and CI=true makes that a failure: %s", why)
	}
	t.Skipf("cannot run here: %s", why)
}

// SkipShort skips a long test under -short (make test-short): not an
// environment skip, so it skips in CI too.
func SkipShort(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("-short: %s", what)
	}
}

// mountProblem says why this process cannot mount FUSE ("" if it can).
// Tests of this package replace it to simulate a machine without FUSE.
var mountProblem = func() string {
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Sprintf("FUSE device not usable: %v", err)
	}
	f.Close()
	if os.Geteuid() == 0 {
		return ""
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		return fmt.Sprintf("not root (euid %d) and no fusermount3: %v", os.Geteuid(), err)
	}
	return ""
}

// RequireMount ends the test (Unavailable) unless this process can mount
// FUSE: /dev/fuse opens read-write, and either it is root or fusermount3
// is on the PATH. A test that calls mount(2) itself needs RequireRoot too.
func RequireMount(t testing.TB) {
	t.Helper()
	if why := mountProblem(); why != "" {
		Unavailable(t, "cannot mount FUSE: %s", why)
	}
}

// euid is os.Geteuid; tests of this package replace it.
var euid = os.Geteuid

// RequireRoot ends the test (Unavailable) unless it runs as root; why
// says what needs root.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if id := euid(); id != 0 {
		Unavailable(t, "%s needs root (euid %d)", why, id)
	}
}

// RequireCmd ends the test (Unavailable) unless name is on the PATH, and
// returns its path.
func RequireCmd(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, "no %s: %v", name, err)
	}
	return path
}

// RequireCPUs ends the test (Unavailable) unless the machine has n CPUs.
func RequireCPUs(t testing.TB, n int) {
	t.Helper()
	if have := runtime.NumCPU(); have < n {
		Unavailable(t, "needs %d CPUs, has %d", n, have)
	}
}
