package testsupport

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// CBinary compiles a C program (a test tool vendored as source, such as
// third_party/fsx) with gcc once per test binary and name, and returns its
// path. gccArgs are the sources and flags, relative to the test's working
// directory (its package directory); CBinary adds -o. The program lands in
// the directory Run removes. Without gcc the test is Unavailable (it fails
// under CI=true: `make deps` installs gcc); a failed compile fails each
// test that asks, with gcc's output.
func CBinary(t testing.TB, name string, gccArgs ...string) string {
	t.Helper()
	if !running.Load() {
		t.Fatal("testsupport.CBinary needs the package's TestMain to call testsupport.Run (which removes the binaries)")
	}
	gcc := RequireCmd(t, "gcc")
	b, err := cBuildFor(name)
	if err != nil {
		t.Fatal(err)
	}
	b.once.Do(func() {
		args := append(append([]string{}, gccArgs...), "-o", b.path)
		out, err := exec.Command(gcc, args...).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("testsupport: gcc %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// cBuildFor returns the build of the C program name, creating the
// directory first (shared with Binary's builds).
func cBuildFor(name string) (*build, error) {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if err := makeBuildDir(); err != nil {
		return nil, err
	}
	b := builds.byName[name]
	if b == nil {
		b = &build{path: filepath.Join(builds.dir, "c-"+name)}
		builds.byName[name] = b
	}
	return b, nil
}
