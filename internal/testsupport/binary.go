package testsupport

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// mainPackage is what Binary builds.
const mainPackage = "github.com/spoolfs/spoolfs/cmd/spoolfs"

// builds are the binaries this test binary built, by build flags, in one
// temporary directory that Run removes at the end.
var builds struct {
	mu      sync.Mutex
	dir     string
	byFlags map[string]*build
	byName  map[string]*build // CBinary's C programs, by name
}

// running is set by Run: Binary refuses to build where nobody removes
// what it built.
var running atomic.Bool

// build is one binary: built once, by whichever test asks first.
type build struct {
	once sync.Once
	path string
	err  error
}

// Run runs the tests of m and then removes the binaries Binary built. A
// package whose tests call Binary has a TestMain that calls it:
//
//	func TestMain(m *testing.M) { os.Exit(testsupport.Run(m)) }
func Run(m *testing.M) int {
	running.Store(true)
	defer removeBinaries()
	return m.Run()
}

// removeBinaries removes the directory of the built binaries.
func removeBinaries() {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
		builds.dir = ""
	}
	builds.byFlags = nil
	builds.byName = nil
}

// Binary builds ./cmd/spoolfs with the go tool once per test binary and
// set of build flags (e.g. "-race"), with the test's own build tags
// (TagFlags), and returns its path. The directory
// is open to every user (tests run it as nobody) and removed by Run; a
// failed build fails each test that asks for it, with the compiler's
// output.
func Binary(t testing.TB, buildFlags ...string) string {
	t.Helper()
	if !running.Load() {
		t.Fatal("testsupport.Binary needs the package's TestMain to call testsupport.Run (which removes the binaries)")
	}
	b, err := buildFor(buildFlags)
	if err != nil {
		t.Fatal(err)
	}
	b.once.Do(func() { b.err = goBuild(b.path, buildFlags) })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// buildFor returns the build of flags, creating the directory first.
func buildFor(flags []string) (*build, error) {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if err := makeBuildDir(); err != nil {
		return nil, err
	}
	key := strings.Join(flags, " ")
	b := builds.byFlags[key]
	if b == nil {
		name := fmt.Sprintf("spoolfs-%d", len(builds.byFlags))
		b = &build{path: filepath.Join(builds.dir, name)}
		builds.byFlags[key] = b
	}
	return b, nil
}

// makeBuildDir makes the directory of the builds unless it exists; the
// caller holds builds.mu.
func makeBuildDir() error {
	if builds.dir != "" {
		return nil
	}
	dir, err := os.MkdirTemp("", "spoolfs-test-bin-")
	if err != nil {
		return fmt.Errorf("testsupport: directory for the binary: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("testsupport: directory for the binary: %w", err)
	}
	builds.dir = dir
	builds.byFlags = map[string]*build{}
	builds.byName = map[string]*build{}
	return nil
}

// goBuild builds the binary at out with the go tool that runs the tests.
func goBuild(out string, flags []string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	args := append(append([]string{"build", "-o", out}, TagFlags()...), flags...)
	cmd := exec.Command(goTool, append(args, mainPackage)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("testsupport: go build -o %s %s: %w\n%s", out, mainPackage, err, b)
	}
	return nil
}
