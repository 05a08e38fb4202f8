package layout

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// module is the import path of this module.
const module = "github.com/spoolfs/spoolfs"

// boundary says what the packages under one directory may depend on,
// directly or not, in their code and in their tests.
type boundary struct {
	// may lists the directories of this module (relative, e.g. "proto")
	// whose packages it may depend on; its own directory is always
	// allowed. "*": every package of the module.
	may []string
	// never lists modules (or package path prefixes) outside this module
	// it must not depend on.
	never []string
	// stdOnly: nothing outside this module but the standard library.
	stdOnly bool
}

// layout is the table of DESIGN.md, "Layout", and docs/architecture.md,
// "Layout" (the internal/ rows split out of node: "Packages" there):
// keep them in step. Each package of the module belongs to
// the longest directory listed here that holds it; a package under none
// fails the test until it is given a row. Dependencies are transitive, so
// a directory may list only what its allowed imports reach as well.
var layout = map[string]boundary{
	// The CLI: everything.
	"cmd": {may: []string{"*"}},
	// Wiring of one process.
	"node": {may: []string{"fsactor", "replication", "volume", "proto", "internal"}},
	// The actor: FUSE and zap; never gRPC (nor protobuf), never buntdb.
	"fsactor": {may: []string{"volume", "internal"},
		never: []string{"google.golang.org/grpc", "google.golang.org/protobuf", "github.com/tidwall/buntdb"}},
	// Replication: proto, buntdb, gRPC; never FUSE.
	"replication": {may: []string{"volume", "proto", "internal"},
		never: []string{"github.com/jacobsa/fuse"}},
	// The data model both sides of the seam share: nothing of ours, no
	// third-party code, so that it carries neither FUSE nor gRPC across.
	"volume": {stdOnly: true},
	// Generated code: none of ours.
	"proto": {},
	// Test and support code shared by the packages above: only itself.
	// internal/testsupport is for tests alone (testOnly).
	"internal": {},
	// Split out of node by concern (docs/architecture.md, "Packages").
	// mTLS material and node identity: nothing of ours, never FUSE,
	// buntdb or the actor.
	"internal/tlsid": {may: []string{"internal/testsupport"},
		never: []string{"github.com/jacobsa/fuse", "github.com/tidwall/buntdb"}},
	// The mount device and mount point: nothing of ours (never the
	// actor, replication, jacobsa/fuse, gRPC or buntdb).
	"internal/mountdev": {may: []string{"internal/testsupport"},
		never: []string{"github.com/jacobsa/fuse", "google.golang.org/grpc", "github.com/tidwall/buntdb"}},
	// The node config and mount options: the actor's defaults and the
	// TLS files' identity (so grpc's credentials); never replication or
	// buntdb.
	"internal/config": {may: []string{"fsactor", "volume", "internal/tlsid", "internal/testsupport"},
		never: []string{"github.com/tidwall/buntdb"}},
	// The admin endpoint and status types: what it reports comes from
	// node through an interface; the replica Status RPC's answer (proto).
	"internal/admin": {may: []string{"proto", "internal/testsupport"},
		never: []string{"github.com/jacobsa/fuse", "github.com/tidwall/buntdb"}},
	// The metrics observed as they happen (client_golang): nothing of
	// ours; the actor and replication reach it through their observer
	// interfaces, which node wires.
	"internal/metrics": {may: []string{"internal/testsupport"},
		never: []string{"github.com/jacobsa/fuse", "google.golang.org/grpc", "github.com/tidwall/buntdb"}},
	// The process's logger, signals and file limit: nothing of ours.
	"internal/process": {may: []string{"internal/testsupport"},
		never: []string{"github.com/jacobsa/fuse", "google.golang.org/grpc", "github.com/tidwall/buntdb"}},
	// A command inside the mount, namespaces, the probe: the mount table
	// of mountdev, nothing else of ours; never FUSE, gRPC or buntdb.
	"internal/launch": {may: []string{"internal/mountdev", "internal/testsupport"},
		never: []string{"github.com/jacobsa/fuse", "google.golang.org/grpc", "github.com/tidwall/buntdb"}},
	// `spoolfs bench`: runs the systems it measures, spoolfs in-process
	// included; only cmd imports it.
	"bench": {may: []string{"node", "fsactor", "replication", "volume", "proto", "internal"}},
	// End-to-end tests of the built binary: they speak to it over the
	// wire (proto) and through faults (internal), never through its
	// packages.
	"e2e": {may: []string{"proto", "internal"},
		never: []string{"github.com/jacobsa/fuse", "github.com/tidwall/buntdb"}},
	// Manifests and units; its tests check them, with internal/tlsid and
	// internal/config.
	"deploy": {may: []string{"node", "fsactor", "replication", "volume", "proto", "internal"}},
}

// testOnly lists the packages (relative) that only tests may depend on:
// a package's own code depending on one of them fails the test.
var testOnly = []string{"internal/testsupport"}

// listedPackage is the part of `go list -json` output the test reads.
type listedPackage struct {
	ImportPath string
	Deps       []string
}

// TestImportBoundaries checks every package of the module, and its tests,
// against the layout table. `go list` failing fails the test.
func TestImportBoundaries(t *testing.T) {
	found := violations{}
	seen := map[string]bool{}
	var pkgs []listedPackage
	for _, tags := range buildTags {
		pkgs = append(pkgs, goList(t, tags)...)
	}
	for _, p := range pkgs {
		owner := basePath(p.ImportPath)
		rel, ours := relPath(owner)
		if !ours {
			continue
		}
		seen[rel] = true
		dir, b, ok := boundaryOf(rel)
		if !ok {
			t.Errorf("package %s is under no directory of the layout table (internal/layout/layout_test.go, DESIGN.md Layout): give it a row", owner)
			continue
		}
		for _, d := range p.Deps {
			if what, why := b.forbids(dir, basePath(d)); why != "" {
				found.add(owner, p.ImportPath != owner, what, why)
			}
			if what, why := testOnlyDep(p.ImportPath, d); why != "" {
				found.add(owner, false, what, why)
			}
		}
	}
	for _, line := range found.lines() {
		t.Error(line)
	}
	for _, must := range []string{"fsactor", "replication", "volume", "node", "proto", "cmd/spoolfs"} {
		if !seen[must] {
			t.Errorf("go list did not list %s/%s: the test checks nothing there", module, must)
		}
	}
}

// violations collects what each package (or only its tests) depends on
// against the table: owner → forbidden dependency → why.
type violations map[string]map[string]string

// add records that owner (its tests only, if test) depends on what.
func (v violations) add(owner string, test bool, what, why string) {
	if test {
		owner += " (tests)"
	}
	if v[owner] == nil {
		v[owner] = map[string]string{}
	}
	v[owner][what] = why
}

// lines reports each violation once, sorted; a test's violation that the
// package itself has is not repeated.
func (v violations) lines() []string {
	var out []string
	for owner, deps := range v {
		code := v[strings.TrimSuffix(owner, " (tests)")]
		for what, why := range deps {
			if _, dup := code[what]; dup && strings.HasSuffix(owner, " (tests)") {
				continue
			}
			out = append(out, owner+" depends on "+what+": "+why+" (DESIGN.md, Layout)")
		}
	}
	slices.Sort(out)
	return out
}

// buildTags are the tag sets the module is built with: files behind
// -tags invariants (make test) import things too.
var buildTags = []string{"", "invariants"}

// goList runs `go list -deps -test -json` over the module with tags: every
// package, its test variants (whose Deps include what the tests import)
// and everything they depend on.
func goList(t *testing.T, tags string) []listedPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-tags="+tags, "-deps", "-test", "-json=ImportPath,Deps", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -tags=%q: %v\n%s", tags, err, stderr.Bytes())
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list listed no package")
	}
	return pkgs
}

// testOnlyDep says whether pkg, a package's own code (not a test variant),
// depends on dep, which only tests may: what and why; why is "" if not.
func testOnlyDep(pkg, dep string) (what, why string) {
	if pkg != basePath(pkg) {
		return "", "" // a test variant: tests may
	}
	rel, ours := relPath(dep)
	if !ours || !slices.Contains(testOnly, rel) {
		return "", ""
	}
	return dep, "only tests may depend on " + rel
}

// basePath strips what go list adds to the path of a test variant:
// "p [p.test]" → p, "p.test" → p, "p_test" → p.
func basePath(path string) string {
	path, _, _ = strings.Cut(path, " ")
	path = strings.TrimSuffix(path, ".test")
	return strings.TrimSuffix(path, "_test")
}

// relPath returns path relative to the module, and whether it is ours.
func relPath(path string) (string, bool) {
	if path == module {
		return ".", true
	}
	rel, ok := strings.CutPrefix(path, module+"/")
	return rel, ok
}

// boundaryOf finds the row of the longest layout directory holding rel.
func boundaryOf(rel string) (string, boundary, bool) {
	best := ""
	for dir := range layout {
		if under(rel, dir) && len(dir) > len(best) {
			best = dir
		}
	}
	b, ok := layout[best]
	return best, b, ok && best != ""
}

// under says whether rel is dir or inside it.
func under(rel, dir string) bool {
	return rel == dir || strings.HasPrefix(rel, dir+"/")
}

// forbids says whether the packages of dir may not depend on dep: what
// is forbidden (the module prefix of the rule, or dep) and why; why is ""
// when dep is allowed.
func (b boundary) forbids(dir, dep string) (what, why string) {
	for _, bad := range b.never {
		if dep == bad || strings.HasPrefix(dep, bad+"/") {
			return bad, "never allowed in " + dir
		}
	}
	rel, ours := relPath(dep)
	if !ours && b.stdOnly && !isStd(dep) {
		return dep, dir + " may depend on the standard library only"
	}
	if !ours || under(rel, dir) || slices.Contains(b.may, "*") {
		return "", ""
	}
	for _, ok := range b.may {
		if under(rel, ok) {
			return "", ""
		}
	}
	return dep, dir + " may depend only on " + strings.Join(append([]string{dir}, b.may...), ", ") + " of this module"
}

// isStd says whether path is a package of the standard library: its first
// element has no dot (module paths outside it start with a domain).
func isStd(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}
