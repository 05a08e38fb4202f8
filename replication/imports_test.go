package replication

import (
	"os/exec"
	"strings"
	"testing"
)

// TestForbiddenImports: replication never reaches FUSE or the actor
// (DESIGN.md, Layout); node adapts between them.
func TestForbiddenImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"github.com/jacobsa/fuse", "github.com/spoolfs/spoolfs/fsactor", "github.com/spoolfs/spoolfs/node"} {
			if dep == bad || strings.HasPrefix(dep, bad+"/") {
				t.Errorf("replication depends on %s", dep)
			}
		}
	}
}
